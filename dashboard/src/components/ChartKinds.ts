// What the charts page can show comes from the API itself: `GET /metrics/kinds` lists every
// metric kind (report kinds registered by the analytics, line crossings), its entity type,
// periods and columns. This module only says how to draw a kind it knows (which columns, which
// derived figures); a kind it does not know is still charted, from its Avg* columns.
import { api } from "../api";
import { addDays, dateLabel, datesBetween, hourKey, localParts } from "./ChartTime";

export type Period = "live" | "hourly" | "daily" | "weekly";
export type EntityType = "camera" | "area";
export type ChartPeriod = Exclude<Period, "live">;
export const CHART_PERIODS: ChartPeriod[] = ["hourly", "daily", "weekly"];
export const PERIOD_LABELS: Record<ChartPeriod, string> = { hourly: "Hourly", daily: "Daily", weekly: "Weekly" };

/** One entry of `GET /metrics/kinds`. */
export interface MetricKind {
  kind: string;
  entity_type: EntityType;
  path: string;
  periods: Period[];
  columns: Partial<Record<Period, string[]>>;
  description: string;
}

export type Cell = string | number | null;
export type Row = Record<string, Cell>;

/** One entity's part of a `/metrics/<entities>/<kind>/<period>` answer. */
export interface EntityAnswer {
  id: string;
  rows: Row[];
  totals: Record<string, unknown> | null;
}

export interface MetricAnswer {
  kind: string;
  entity_type: EntityType;
  period: Period;
  time_zone: string;
  columns: string[];
  entities: EntityAnswer[];
}

export function loadKinds(signal?: AbortSignal): Promise<MetricKind[]> {
  return api.get<MetricKind[]>("/metrics/kinds", signal);
}

// ---------------------------------------------------------------------------------------
// How each kind is drawn
// ---------------------------------------------------------------------------------------

type Value = (row: Row) => number | null;

interface SeriesRule {
  label: string;
  value: Value;
}

interface ChartRule {
  /** Suffix of the chart's id, unique within the kind. */
  id: string;
  title: string;
  type: "bar" | "line";
  unit: string;
  series: SeriesRule[];
}

interface KindRule {
  title: string;
  /** One plain sentence for people; the API's own description is kept in the data table. */
  about?: string;
  charts: ChartRule[];
}

function num(row: Row, column: string): number | null {
  const v = row[column];
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

const col = (column: string): Value => (row) => num(row, column);

/** numerator / denominator × scale; null when the denominator is 0 or missing. */
const ratio = (numerator: string, denominator: string | string[], scale = 1): Value => (row) => {
  const n = num(row, numerator);
  const parts = (Array.isArray(denominator) ? denominator : [denominator]).map((c) => num(row, c));
  if (n === null || parts.some((p) => p === null)) return null;
  const d = (parts as number[]).reduce((a, b) => a + b, 0);
  return d > 0 ? Math.round((n / d) * scale * 100) / 100 : null;
};

const RULES: Record<string, KindRule> = {
  occupancy: {
    title: "Occupancy",
    about: "How many people were there: the average and the peak.",
    charts: [{
      id: "people", title: "Occupancy", type: "line", unit: "people",
      series: [
        { label: "Average", value: col("AvgOccupancy") },
        { label: "Peak", value: col("MaxOccupancy") },
      ],
    }],
  },
  "line-crossings": {
    title: "In/out traffic",
    about: "People crossing each counting line, in and out.",
    charts: [],
  }, // pivoted per line: see lineCrossingChart
  presence: {
    title: "Presence and entries",
    about: "People in the camera's zones, and entries through its entry zones and into its zones.",
    charts: [
      {
        id: "people", title: "People in zones", type: "line", unit: "people",
        series: [
          { label: "Average", value: col("AvgPeople") },
          { label: "Peak", value: col("MaxPeople") },
          { label: "Estimated occupancy (lines)", value: col("MaxEstimatedOccupancy") },
        ],
      },
      {
        id: "entries", title: "Entries", type: "bar", unit: "entries",
        series: [
          { label: "Through entry zones", value: col("SumEntries") },
          { label: "Into zones", value: col("SumZoneEntries") },
        ],
      },
    ],
  },
  "social-distancing": {
    title: "Distancing",
    about: "People, and people closer than the distance limit to someone.",
    charts: [{
      id: "people", title: "Distancing", type: "line", unit: "people",
      series: [
        { label: "People (average)", value: col("AvgPeople") },
        { label: "In violation (average)", value: col("AvgViolatingPeople") },
        { label: "In violation (peak)", value: col("MaxViolatingPeople") },
      ],
    }],
  },
  dwell: {
    title: "Dwell time",
    about: "Visits that ended, loitering, and how long a visit lasted on average.",
    charts: [
      {
        id: "visits", title: "Visits", type: "bar", unit: "visits",
        series: [
          { label: "Visits", value: col("SumSessions") },
          { label: "Loitering", value: col("SumLoitering") },
        ],
      },
      {
        id: "time", title: "Average visit", type: "line", unit: "seconds",
        series: [{ label: "Average visit (s)", value: ratio("SumDwellMs", "SumSessions", 1 / 1000) }],
      },
    ],
  },
  facemask: {
    title: "Face masks",
    about: "People with and without a mask, and the share wearing one.",
    charts: [
      {
        id: "people", title: "People with and without a mask", type: "line", unit: "people",
        series: [
          { label: "With mask", value: col("AvgWithMask") },
          { label: "Without mask", value: col("AvgWithoutMask") },
          { label: "Face not seen", value: col("AvgNoFace") },
        ],
      },
      {
        id: "usage", title: "Mask usage", type: "line", unit: "%",
        series: [{ label: "Usage (%)", value: ratio("SumWithMask", ["SumWithMask", "SumWithoutMask"], 100) }],
      },
    ],
  },
  attention: {
    title: "Attention",
    about: "People, and people looking at the camera or display.",
    charts: [{
      id: "people", title: "People looking", type: "line", unit: "people",
      series: [
        { label: "People (average)", value: col("AvgPeople") },
        { label: "Looking (average)", value: col("AvgLooking") },
        { label: "Looking (peak)", value: col("MaxLooking") },
      ],
    }],
  },
  engagement: {
    title: "Engagement",
    about: "People who left, those engaged with the target, and for how long.",
    charts: [
      {
        id: "people", title: "Engaged people", type: "bar", unit: "people",
        series: [
          { label: "People", value: col("SumPeople") },
          { label: "Engaged", value: col("SumEngagedPeople") },
        ],
      },
      {
        id: "time", title: "Average engagement", type: "line", unit: "seconds",
        series: [{ label: "Average engagement (s)", value: ratio("SumEngagementMs", "SumEngagedPeople", 1 / 1000) }],
      },
    ],
  },
  audience: {
    title: "Audience funnel",
    about: "People who left, those passing by, those interested (stopped and looking), and the conversion.",
    charts: [
      {
        id: "funnel", title: "Audience funnel", type: "bar", unit: "people",
        series: [
          { label: "People", value: col("SumPeople") },
          { label: "Passing by", value: col("SumPassingBy") },
          { label: "Interested", value: col("SumInterested") },
        ],
      },
      {
        id: "conversion", title: "Conversion", type: "line", unit: "%",
        series: [{ label: "Interested / passing by (%)", value: ratio("SumInterested", "SumPassingBy", 100) }],
      },
    ],
  },
};

/** Kinds in the order a person reads them; kinds not listed follow in the API's order. */
const ORDER = ["occupancy", "line-crossings", "presence", "social-distancing", "dwell", "facemask",
  "attention", "engagement", "audience"];

export function kindTitle(kind: string): string {
  const rule = RULES[kind];
  if (rule) return rule.title;
  const words = kind.replace(/[-_]+/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** A plain description of a kind: ours when we have one, else the API's. */
export function kindAbout(kind: MetricKind): string {
  return RULES[kind.kind]?.about ?? kind.description;
}

/** The kinds of one entity type, in reading order. */
export function kindsFor(kinds: MetricKind[], entity: EntityType): MetricKind[] {
  const rank = (k: MetricKind) => {
    const i = ORDER.indexOf(k.kind);
    return i < 0 ? ORDER.length : i;
  };
  return kinds
    .map((k, i) => ({ k, i }))
    .filter(({ k }) => k.entity_type === entity)
    .sort((a, b) => rank(a.k) - rank(b.k) || a.i - b.i)
    .map(({ k }) => k);
}

function genericRule(kind: MetricKind, period: ChartPeriod): KindRule {
  const columns = (kind.columns[period] ?? []).filter((c) => c.startsWith("Avg")).slice(0, 4);
  return {
    title: kindTitle(kind.kind),
    charts: [{
      id: "avg", title: kindTitle(kind.kind), type: "line", unit: "",
      series: columns.map((c) => ({ label: c.replace(/^Avg/, "Average "), value: col(c) })),
    }],
  };
}

// ---------------------------------------------------------------------------------------
// Rows to chart data
// ---------------------------------------------------------------------------------------

export interface Slot {
  key: string;
  label: string;
}

export interface ChartSpec {
  id: string;
  title: string;
  type: "bar" | "line";
  unit: string;
  /** What the x axis is: the data table's first column header. */
  axis: string;
  slots: Slot[];
  series: { label: string; data: (number | null)[] }[];
}

export const AXIS_LABELS: Record<ChartPeriod, string> = { hourly: "Hour", daily: "Date", weekly: "Week" };

export interface Range {
  from: string;
  to: string;
}

const KEY_COLUMN: Record<ChartPeriod, string> = { hourly: "Hour", daily: "Date", weekly: "Week" };

function monday(day: string): string {
  const weekday = new Date(`${day}T00:00:00Z`).getUTCDay(); // 0 = Sunday
  return addDays(day, -((weekday + 6) % 7));
}

/** The x axis: every hour, date or week of the range, so gaps show as gaps. */
export function slotsFor(period: ChartPeriod, range: Range, hourlyDays: string[]): Slot[] {
  if (period === "hourly") {
    const many = hourlyDays.length > 1;
    return hourlyDays.flatMap((d) => Array.from({ length: 24 }, (_, h) => {
      const hh = String(h).padStart(2, "0");
      return { key: `${d} ${hh}`, label: many ? `${dateLabel(d)} ${hh}:00` : `${hh}:00` };
    }));
  }
  if (period === "daily") {
    return datesBetween(range.from, range.to).map((d) => ({ key: d, label: dateLabel(d) }));
  }
  const out: Slot[] = [];
  for (let w = monday(range.from); w <= range.to && out.length < 60; w = addDays(w, 7)) {
    out.push({ key: w, label: `Week of ${dateLabel(w, false)}` });
  }
  return out;
}

/** The slot key of a row (or of an instant, for hourly rows made from live records). */
export function rowKey(row: Row, period: ChartPeriod, timeZone: string): string | null {
  const v = row[KEY_COLUMN[period]];
  if (typeof v !== "string") return null;
  if (period !== "hourly") return v.slice(0, 10);
  const t = new Date(v);
  return Number.isNaN(t.getTime()) ? null : hourKey(t, timeZone);
}

/** The slot key of a live record's timestamp for `period`. */
export function instantKey(timestamp: string, period: ChartPeriod, timeZone: string): string | null {
  const t = new Date(timestamp);
  if (Number.isNaN(t.getTime())) return null;
  if (period === "hourly") return hourKey(t, timeZone);
  const day = localParts(t, timeZone).date;
  return period === "daily" ? day : monday(day);
}

function byKey(rows: Row[], period: ChartPeriod, timeZone: string): Map<string, Row> {
  const out = new Map<string, Row>();
  for (const row of rows) {
    const k = rowKey(row, period, timeZone);
    if (k !== null) out.set(k, row);
  }
  return out;
}

function lineCrossingChart(rows: Row[], lines: string[], period: ChartPeriod, slots: Slot[],
                           timeZone: string): ChartSpec {
  const counts = new Map<string, { In: number; Out: number }>();
  const names = new Set(lines);
  for (const row of rows) {
    const k = rowKey(row, period, timeZone);
    const line = row.Line;
    if (k === null || typeof line !== "string") continue;
    names.add(line);
    const c = counts.get(`${k}\u0000${line}`) ?? { In: 0, Out: 0 };
    c.In += num(row, "In") ?? 0;
    c.Out += num(row, "Out") ?? 0;
    counts.set(`${k}\u0000${line}`, c);
  }
  const series = [...names].sort().flatMap((line) => (["In", "Out"] as const).map((dir) => ({
    label: `${line} ${dir.toLowerCase()}`,
    data: slots.map((s) => counts.get(`${s.key}\u0000${line}`)?.[dir] ?? null),
  })));
  return { id: "line-crossings", title: "In/out traffic", type: "bar", unit: "people", axis: AXIS_LABELS[period],
    slots, series };
}

/** The charts of one kind for one entity's rows. */
export function buildCharts(kind: MetricKind, period: ChartPeriod, answer: EntityAnswer, slots: Slot[],
                            timeZone: string): ChartSpec[] {
  if (kind.kind === "line-crossings") {
    const lines = answer.totals && typeof answer.totals.Lines === "object" && answer.totals.Lines
      ? Object.keys(answer.totals.Lines as object) : [];
    return [lineCrossingChart(answer.rows, lines, period, slots, timeZone)];
  }
  const rule = RULES[kind.kind] ?? genericRule(kind, period);
  const rows = byKey(answer.rows, period, timeZone);
  return rule.charts.map((c) => ({
    id: `${kind.kind}-${c.id}`,
    title: c.title,
    type: c.type,
    unit: c.unit,
    axis: AXIS_LABELS[period],
    slots,
    series: c.series.map((s) => ({
      label: s.label,
      data: slots.map((slot) => {
        const row = rows.get(slot.key);
        return row ? s.value(row) : null;
      }),
    })),
  }));
}

/** Whether a chart has any value to draw. */
export function hasData(spec: ChartSpec): boolean {
  return spec.series.some((s) => s.data.some((v) => v !== null));
}

// ---------------------------------------------------------------------------------------
// Demographics and mood (audience report, only when the demographics step is enabled)
// ---------------------------------------------------------------------------------------

export interface AudienceGlobal {
  people: number;
  passing_by: number;
  interested: number;
  conversion: number | null;
  average_stop_seconds: number | null;
  average_attention_seconds: number | null;
  age?: Record<string, number>;
  gender?: Record<string, number>;
  emotion?: Record<string, number>;
}

export interface AudienceReport {
  demographics: boolean;
  cameras: { id: string; global?: AudienceGlobal }[];
}

/** One bar chart per breakdown (age, gender, mood) of the interested over the whole range. */
export function demographicCharts(global: AudienceGlobal): ChartSpec[] {
  const parts: [keyof AudienceGlobal, string, string][] = [
    ["age", "age", "Interested by age"],
    ["gender", "gender", "Interested by gender"],
    ["emotion", "mood", "Mood of the interested"],
  ];
  const out: ChartSpec[] = [];
  for (const [field, id, title] of parts) {
    const values = global[field];
    if (!values || typeof values !== "object") continue;
    const entries = Object.entries(values as Record<string, number>);
    out.push({
      id: `audience-${id}`, title, type: "bar", unit: "people", axis: id === "mood" ? "Mood" : id === "age" ? "Age" : "Gender",
      slots: entries.map(([k]) => ({ key: k, label: k.replace(/_/g, " ") })),
      series: [{ label: "Interested people", data: entries.map(([, v]) => (typeof v === "number" ? v : null)) }],
    });
  }
  return out;
}
