// #/charts: every metric the API serves for one camera or area, hourly, daily or weekly over a
// date range in the processor's time zone, live numbers from the live stream, and the heatmap.
// The choices live in the hash (#/charts?camera=lobby&period=daily&from=...&to=...), so a
// reload or a shared link shows the same charts.
import "../charts.css";

import { useEffect, useMemo, useState } from "preact/hooks";

import { api, query } from "../api";
import { ChartView } from "../components/ChartCanvas";
import {
  type AudienceReport,
  buildCharts,
  CHART_PERIODS,
  type ChartPeriod,
  demographicCharts,
  type EntityAnswer,
  hasData,
  instantKey,
  kindAbout,
  kindsFor,
  kindTitle,
  loadKinds,
  type MetricAnswer,
  type MetricKind,
  PERIOD_LABELS,
  type Range,
  type Row,
  slotsFor,
} from "../components/ChartKinds";
import { type LiveFeed, LiveTiles, type Selection, useLiveFeed } from "../components/ChartLive";
import { addDays, datesBetween, isDate, todayIn } from "../components/ChartTime";
import { HeatmapOverlay } from "../components/HeatmapOverlay";
import { ErrorMessage, Field, Loading, PageHeader, useAsync, useInterval } from "../components/ui";
import { routeParams } from "../router";
import type { PageProps } from ".";

interface CameraInfo {
  id: string;
  name: string;
  counting_lines?: { name: string }[];
}

interface AreaInfo {
  id: string;
  name: string;
  cameras?: string[];
}

interface Setup {
  kinds: MetricKind[];
  cameras: CameraInfo[];
  areas: AreaInfo[];
  timeZone: string;
}

/** Hourly charts ask for one day per request: at most this many days at once. */
const MAX_HOURLY_DAYS = 7;
const MAX_RANGE_DAYS = 366;
const REFRESH_MS = 60_000;

async function loadSetup(signal: AbortSignal): Promise<Setup> {
  const [kinds, cameras, areas, app] = await Promise.all([
    loadKinds(signal),
    api.get<CameraInfo[]>("/cameras", signal),
    api.get<AreaInfo[]>("/areas", signal),
    api.get<{ values: Record<string, string> }>("/app", signal).catch(() => null),
  ]);
  let timeZone = app?.values?.TimeZone;
  if (!timeZone && kinds.length) {
    // Every metrics answer names the time zone; an empty id list makes it a cheap one.
    const k = kinds[0];
    const empty = await api.get<MetricAnswer>(
      `${k.path}/${k.periods[0]}?${k.entity_type === "area" ? "areas" : "cameras"}=`, signal,
    ).catch(() => null);
    timeZone = empty?.time_zone;
  }
  return { kinds, cameras, areas, timeZone: timeZone || "UTC" };
}

interface Choice {
  selection: Selection | null;
  period: ChartPeriod;
  from: string;
  to: string;
}

function initialChoice(setup: Setup): Choice {
  const p = routeParams();
  const today = todayIn(setup.timeZone);
  let selection: Selection | null = null;
  const cam = p.get("camera");
  const area = p.get("area");
  if (cam && setup.cameras.some((c) => c.id === cam)) selection = { type: "camera", id: cam };
  else if (area && setup.areas.some((a) => a.id === area)) selection = { type: "area", id: area };
  else if (setup.cameras.length) selection = { type: "camera", id: setup.cameras[0].id };
  else if (setup.areas.length) selection = { type: "area", id: setup.areas[0].id };
  const period = (CHART_PERIODS as string[]).includes(p.get("period") ?? "") ? p.get("period") as ChartPeriod : "daily";
  const to = isDate(p.get("to") ?? "") ? p.get("to")! : today;
  const from = isDate(p.get("from") ?? "") ? p.get("from")! : addDays(to, -6);
  return { selection, period, from, to };
}

function writeHash(choice: Choice): void {
  const q = query({
    camera: choice.selection?.type === "camera" ? choice.selection.id : undefined,
    area: choice.selection?.type === "area" ? choice.selection.id : undefined,
    period: choice.period,
    from: choice.from,
    to: choice.to,
  });
  const next = `#/charts${q}`;
  if (window.location.hash !== next) window.history.replaceState(null, "", next);
}

function rangeProblem(from: string, to: string): string | null {
  if (!isDate(from) || !isDate(to)) return "Choose both dates.";
  if (from > to) return "The first date is after the last date.";
  if (datesBetween(from, to).length > MAX_RANGE_DAYS) return `Choose at most ${MAX_RANGE_DAYS} days.`;
  return null;
}

export function ChartsPage(_props: PageProps) {
  const setup = useAsync(loadSetup, []);
  return (
    <section class="charts-page">
      <PageHeader title="Charts" />
      <ErrorMessage error={setup.error} />
      {setup.loading && !setup.data ? <Loading what="charts" /> : null}
      {setup.data ? <Charts setup={setup.data} /> : null}
    </section>
  );
}

function Charts(props: { setup: Setup }) {
  const { setup } = props;
  const [choice, setChoice] = useState<Choice>(() => initialChoice(setup));
  useEffect(() => writeHash(choice), [choice]);
  const live = useLiveFeed(choice.selection);
  const today = todayIn(setup.timeZone);
  const problem = rangeProblem(choice.from, choice.to);

  if (!choice.selection) {
    return <p class="no-data">No cameras or areas are configured yet: add a camera to see its charts.</p>;
  }
  const sel = choice.selection;
  const camera = sel.type === "camera" ? setup.cameras.find((c) => c.id === sel.id) : undefined;
  const area = sel.type === "area" ? setup.areas.find((a) => a.id === sel.id) : undefined;
  const name = camera?.name || area?.name || sel.id;
  const kinds = kindsFor(setup.kinds, sel.type);
  const lines = (camera?.counting_lines ?? []).map((l) => l.name);
  const range: Range = { from: choice.from, to: choice.to };

  const set = (patch: Partial<Choice>) => setChoice((c) => ({ ...c, ...patch }));
  const selectValue = `${sel.type}:${sel.id}`;

  return (
    <>
      <form class="card chart-controls" onSubmit={(e) => e.preventDefault()} aria-label="What to chart">
        <div class="row">
          <Field label="Camera or area">
            {(id) => (
              <select id={id} value={selectValue} onChange={(e) => {
                const [type, ...rest] = (e.target as HTMLSelectElement).value.split(":");
                set({ selection: { type: type as Selection["type"], id: rest.join(":") } });
              }}>
                {setup.cameras.length ? (
                  <optgroup label="Cameras">
                    {setup.cameras.map((c) => <option key={c.id} value={`camera:${c.id}`}>{c.name || c.id}</option>)}
                  </optgroup>
                ) : null}
                {setup.areas.length ? (
                  <optgroup label="Areas">
                    {setup.areas.map((a) => <option key={a.id} value={`area:${a.id}`}>{a.name || a.id}</option>)}
                  </optgroup>
                ) : null}
              </select>
            )}
          </Field>
          <Field label="Period">
            {(id) => (
              <select id={id} value={choice.period}
                      onChange={(e) => set({ period: (e.target as HTMLSelectElement).value as ChartPeriod })}>
                {CHART_PERIODS.map((p) => <option key={p} value={p}>{PERIOD_LABELS[p]}</option>)}
              </select>
            )}
          </Field>
          <Field label="From">
            {(id) => (
              <input id={id} type="date" value={choice.from} max={choice.to || undefined} required
                     onChange={(e) => set({ from: (e.target as HTMLInputElement).value })} />
            )}
          </Field>
          <Field label="To">
            {(id) => (
              <input id={id} type="date" value={choice.to} min={choice.from || undefined} required
                     onChange={(e) => set({ to: (e.target as HTMLInputElement).value })} />
            )}
          </Field>
        </div>
        <div class="controls-foot">
          <div class="quick-buttons" role="group" aria-label="Quick date ranges">
            <button type="button" class="btn plain" onClick={() => set({ from: today, to: today, period: "hourly" })}>Today, hourly</button>
            <button type="button" class="btn plain" onClick={() => set({ from: addDays(today, -6), to: today })}>Last 7 days</button>
            <button type="button" class="btn plain" onClick={() => set({ from: addDays(today, -27), to: today })}>Last 4 weeks</button>
          </div>
          <p class="tz-note">
            Times and dates are in the processor's time zone, <strong>{setup.timeZone}</strong> (today there is {today}).
          </p>
        </div>
        {problem ? <p class="error" role="alert">{problem}</p> : null}
      </form>

      <LiveTiles selection={sel} feed={live.feed} state={live.state} detail={live.detail} lines={lines}
                 timeZone={setup.timeZone} />

      {problem ? null : (
        <>
          <h2 class="charts-heading">
            {PERIOD_LABELS[choice.period]} charts for {name}
            <span class="charts-range"> · {choice.from === choice.to ? choice.from : `${choice.from} to ${choice.to}`}</span>
          </h2>
          <div class="chart-grid">
            {kinds.map((k) => (
              <MetricCard key={`${selectValue}:${k.kind}`} kind={k} selection={sel} name={name} period={choice.period}
                          range={range} timeZone={setup.timeZone} today={today} feed={live.feed} lines={lines} />
            ))}
          </div>
          {kinds.length === 0 ? <p class="no-data">The API serves no metrics for {sel.type === "area" ? "areas" : "cameras"}.</p> : null}
          {camera ? <HeatmapOverlay camera={camera.id} cameraName={name} from={choice.from} to={choice.to} /> : null}
        </>
      )}
    </>
  );
}

interface Loaded {
  answer: EntityAnswer;
  hourlyDays: string[];
  audience: AudienceReport | null;
}

async function loadMetric(kind: MetricKind, sel: Selection, period: ChartPeriod, range: Range,
                          signal: AbortSignal): Promise<Loaded> {
  const ids = { [sel.type === "camera" ? "cameras" : "areas"]: sel.id };
  let answer: EntityAnswer = { id: sel.id, rows: [], totals: null };
  let hourlyDays: string[] = [];
  if (period === "hourly") {
    hourlyDays = datesBetween(range.from, range.to).slice(-MAX_HOURLY_DAYS);
    const parts = await Promise.all(hourlyDays.map((d) =>
      api.get<MetricAnswer>(`${kind.path}/hourly${query({ ...ids, date: d })}`, signal)));
    const rows: Row[] = [];
    for (const p of parts) rows.push(...(p.entities[0]?.rows ?? []));
    answer = { id: sel.id, rows, totals: parts[parts.length - 1]?.entities[0]?.totals ?? null };
  } else {
    const a = await api.get<MetricAnswer>(
      `${kind.path}/${period}${query({ ...ids, from_date: range.from, to_date: range.to })}`, signal);
    answer = a.entities[0] ?? answer;
  }
  let audience: AudienceReport | null = null;
  if (kind.kind === "audience" && sel.type === "camera") {
    audience = await api.get<AudienceReport>(`${kind.path}/report${query({
      cameras: sel.id, from_date: range.from, to_date: range.to, buckets: "global",
    })}`, signal).catch(() => null);
  }
  return { answer, hourlyDays, audience };
}

function MetricCard(props: {
  kind: MetricKind;
  selection: Selection;
  name: string;
  period: ChartPeriod;
  range: Range;
  timeZone: string;
  today: string;
  feed: LiveFeed;
  lines: string[];
}) {
  const { kind, selection, period, range, timeZone } = props;
  const supported = (kind.periods as string[]).includes(period);
  const titleId = `kind-${kind.kind}-title`;
  const data = useAsync<Loaded | null>(
    (signal) => supported ? loadMetric(kind, selection, period, range, signal) : Promise.resolve(null),
    [kind.kind, selection.type, selection.id, period, range.from, range.to],
  );
  // Crossings seen on the live stream since the data was loaded, added to its bars.
  const [liveRows, setLiveRows] = useState<Row[]>([]);
  useEffect(() => setLiveRows([]), [data.data]);

  const isLines = kind.kind === "line-crossings";
  useEffect(() => {
    if (!isLines || !supported) return;
    return props.feed.subscribe((r) => {
      if (r.kind !== "line_crossing" || r.source_id !== selection.id || typeof r.line !== "string") return;
      const key = instantKey(r.timestamp, period, timeZone);
      if (!key) return;
      const day = period === "hourly" ? key.slice(0, 10) : key;
      if (day < range.from || day > range.to) return;
      const row: Row = period === "hourly" ? { Hour: r.timestamp } : { Date: key };
      row.Line = r.line;
      row.In = r.direction === "in" ? 1 : 0;
      row.Out = r.direction === "out" ? 1 : 0;
      setLiveRows((rows) => [...rows, row]);
    });
  }, [isLines, supported, selection.id, period, range.from, range.to, timeZone]);

  // Reports of today are recomputed by the processor as it goes: ask again now and then.
  useInterval(() => {
    if (supported && !isLines && range.to >= props.today) data.reload();
  }, REFRESH_MS);

  const specs = useMemo(() => {
    if (!data.data) return [];
    const slots = slotsFor(period, range, data.data.hourlyDays);
    const answer = liveRows.length ? { ...data.data.answer, rows: [...data.data.answer.rows, ...liveRows] } : data.data.answer;
    return buildCharts(kind, period, answer, slots, timeZone);
  }, [data.data, liveRows, kind, period, range.from, range.to, timeZone]);

  const lineTotals = useMemo(() => {
    if (!isLines || !data.data) return null;
    const out = new Map<string, { in: number; out: number }>(props.lines.map((l) => [l, { in: 0, out: 0 }]));
    for (const row of [...data.data.answer.rows, ...liveRows]) {
      if (typeof row.Line !== "string") continue;
      const t = out.get(row.Line) ?? { in: 0, out: 0 };
      t.in += typeof row.In === "number" ? row.In : 0;
      t.out += typeof row.Out === "number" ? row.Out : 0;
      out.set(row.Line, t);
    }
    return [...out.entries()].sort(([a], [b]) => a.localeCompare(b));
  }, [isLines, data.data, liveRows, props.lines.join("\u0000")]);

  const context = `${props.name}, ${range.from === range.to ? range.from : `${range.from} to ${range.to}`}, ${timeZone}`;
  const demographics = data.data?.audience;
  const global = demographics?.cameras.find((c) => c.id === selection.id)?.global;
  const clipped = period === "hourly" && data.data && datesBetween(range.from, range.to).length > MAX_HOURLY_DAYS;

  return (
    <article class="card metric" aria-labelledby={titleId}>
      <h3 id={titleId}>{kindTitle(kind.kind)}</h3>
      <p class="hint metric-description">{kindAbout(kind)}</p>
      {!supported ? (
        <p class="no-data">
          Not available {PERIOD_LABELS[period].toLowerCase()}: choose {kind.periods.filter((p) => p !== "live")
            .map((p) => PERIOD_LABELS[p as ChartPeriod]?.toLowerCase()).filter(Boolean).join(" or ")}.
        </p>
      ) : data.error ? (
        <ErrorMessage error={data.error} />
      ) : !data.data ? (
        <Loading what={kindTitle(kind.kind).toLowerCase()} />
      ) : (
        <>
          {clipped ? <p class="hint">Hourly charts show the last {MAX_HOURLY_DAYS} days of the range.</p> : null}
          {lineTotals && lineTotals.length ? (
            <ul class="line-totals" aria-label="Totals of the chart">
              {lineTotals.map(([line, t], i) => (["in", "out"] as const).map((dir) => (
                <li key={`${line}-${dir}`}>
                  <span id={`total-${i}-${dir}`}>Total {line} {dir}</span>
                  <output aria-labelledby={`total-${i}-${dir}`} aria-live="off">{t[dir]}</output>
                </li>
              )))}
            </ul>
          ) : null}
          {specs.length && !specs.some(hasData) && !(kind.kind === "audience" && demographics?.demographics) ? (
            <p class="no-data">No data for {props.name} in this range.</p>
          ) : specs.map((s) => <ChartView key={s.id} spec={s} context={context} hideTitle={s.title === kindTitle(kind.kind)}
                                       emptyText={`No data for ${props.name} in this range.`} />)}
          {kind.kind === "audience" && demographics ? (
            demographics.demographics && global ? (
              demographicCharts(global).map((s) => <ChartView key={s.id} spec={s} context={context}
                                                              emptyText="No interested people in this range." />)
            ) : (
              <p class="hint">Demographics and mood appear here when the demographics step is enabled.</p>
            )
          ) : null}
        </>
      )}
    </article>
  );
}
