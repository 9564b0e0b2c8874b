// The charts page's data logic, run by Node's own test runner (tests/test_dashboard_charts.py
// bundles this file with esbuild and runs it): dates and hours in the processor's time zone
// (not the browser's), the x axis slots, rows to series, the line-crossing pivot with live rows
// added, and the live stream's reconnection backoff.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  buildCharts,
  demographicCharts,
  hasData,
  instantKey,
  kindsFor,
  type MetricKind,
  rowKey,
  slotsFor,
} from "../src/components/ChartKinds";
import { addDays, datesBetween, hourKey, isDate, localParts, todayIn } from "../src/components/ChartTime";
import { backoffDelay } from "../src/live";

const kind = (name: string, entity: "camera" | "area" = "camera", columns: string[] = []): MetricKind => ({
  kind: name, entity_type: entity, path: `/metrics/${entity}s/${name}`, periods: ["live", "hourly", "daily", "weekly"],
  columns: { hourly: ["Hour", ...columns], daily: ["Date", ...columns], weekly: ["Week", ...columns] },
  description: "",
});

test("dates and hours are the processor's, whatever the browser's zone", () => {
  const instant = new Date("2024-10-26T22:30:00Z");
  assert.deepEqual(localParts(instant, "UTC"), { date: "2024-10-26", hour: 22, minute: 30 });
  assert.deepEqual(localParts(instant, "Europe/Berlin"), { date: "2024-10-27", hour: 0, minute: 30 });
  assert.deepEqual(localParts(instant, "America/New_York"), { date: "2024-10-26", hour: 18, minute: 30 });
  assert.equal(todayIn("Asia/Tokyo", instant), "2024-10-27");
  assert.equal(todayIn("Not/AZone", instant), "2024-10-26"); // unknown name: UTC, no crash
  // The DST change in Berlin: 02:30 CEST and 02:30 CET are both local hour 02.
  assert.equal(hourKey(new Date("2024-10-27T00:30:00Z"), "Europe/Berlin"), "2024-10-27 02");
  assert.equal(hourKey(new Date("2024-10-27T01:30:00Z"), "Europe/Berlin"), "2024-10-27 02");
});

test("date arithmetic", () => {
  assert.equal(addDays("2024-02-28", 1), "2024-02-29");
  assert.equal(addDays("2024-03-01", -1), "2024-02-29");
  assert.equal(addDays("2024-12-31", 1), "2025-01-01");
  assert.deepEqual(datesBetween("2024-12-30", "2025-01-02"), ["2024-12-30", "2024-12-31", "2025-01-01", "2025-01-02"]);
  assert.deepEqual(datesBetween("2025-01-02", "2025-01-01"), []);
  assert.ok(isDate("2009-03-01"));
  assert.ok(!isDate("2009-3-1"));
  assert.ok(!isDate(""));
});

test("slots cover the whole range so gaps show as gaps", () => {
  const range = { from: "2009-02-25", to: "2009-03-03" };
  const daily = slotsFor("daily", range, []);
  assert.equal(daily.length, 7);
  assert.equal(daily[0].key, "2009-02-25");
  assert.equal(daily[6].key, "2009-03-03");
  const weekly = slotsFor("weekly", range, []);
  assert.deepEqual(weekly.map((s) => s.key), ["2009-02-23", "2009-03-02"]); // Mondays
  const hourly = slotsFor("hourly", range, ["2009-03-01"]);
  assert.equal(hourly.length, 24);
  assert.equal(hourly[10].key, "2009-03-01 10");
  assert.equal(hourly[10].label, "10:00");
  assert.equal(slotsFor("hourly", range, ["2009-03-01", "2009-03-02"]).length, 48);
});

test("report rows become series on their slots, in the processor's zone", () => {
  const occupancy = kind("occupancy", "camera", ["Samples", "AvgOccupancy", "MaxOccupancy", "SumOccupancy"]);
  const answer = {
    id: "cam", totals: null,
    rows: [{ Hour: "2009-03-01T10:00:00+00:00", Samples: 114, AvgOccupancy: 5.7, MaxOccupancy: 8, SumOccupancy: 653 }],
  };
  const utc = buildCharts(occupancy, "hourly", answer, slotsFor("hourly", { from: "2009-03-01", to: "2009-03-01" }, ["2009-03-01"]), "UTC");
  assert.equal(utc.length, 1);
  assert.deepEqual(utc[0].series.map((s) => s.label), ["Average", "Peak"]);
  assert.equal(utc[0].series[1].data[10], 8);
  assert.equal(utc[0].series[1].data.filter((v) => v !== null).length, 1);
  assert.equal(utc[0].axis, "Hour");
  // The same instant is 11:00 in Berlin (CET).
  const berlin = buildCharts(occupancy, "hourly", answer, slotsFor("hourly", { from: "2009-03-01", to: "2009-03-01" }, ["2009-03-01"]), "Europe/Berlin");
  assert.equal(berlin[0].series[1].data[11], 8);
  assert.equal(berlin[0].series[1].data[10], null);
  assert.equal(rowKey({ Date: "2009-03-01" }, "daily", "UTC"), "2009-03-01");
  assert.equal(rowKey({ Hour: "garbage" }, "hourly", "UTC"), null);
});

test("derived figures: no division by zero", () => {
  const dwell = kind("dwell");
  const slots = slotsFor("daily", { from: "2009-03-01", to: "2009-03-02" }, []);
  const charts = buildCharts(dwell, "daily", {
    id: "cam", totals: null,
    rows: [{ Date: "2009-03-01", SumSessions: 4, SumDwellMs: 10000, SumLoitering: 1 },
           { Date: "2009-03-02", SumSessions: 0, SumDwellMs: 0, SumLoitering: 0 }],
  }, slots, "UTC");
  const avg = charts.find((c) => c.id === "dwell-time")!;
  assert.deepEqual(avg.series[0].data, [2.5, null]);
  const visits = charts.find((c) => c.id === "dwell-visits")!;
  assert.deepEqual(visits.series[0].data, [4, 0]);
});

test("a kind the page does not know is charted from its Avg columns", () => {
  const novel = kind("queue-length", "camera", ["Samples", "AvgQueue", "MaxQueue"]);
  const charts = buildCharts(novel, "daily", { id: "c", totals: null, rows: [{ Date: "2009-03-01", AvgQueue: 3 }] },
    slotsFor("daily", { from: "2009-03-01", to: "2009-03-01" }, []), "UTC");
  assert.equal(charts.length, 1);
  assert.deepEqual(charts[0].series.map((s) => s.label), ["Average Queue"]);
  assert.deepEqual(charts[0].series[0].data, [3]);
});

test("line crossings: one in and one out series per line, live rows added up", () => {
  const lines = kind("line-crossings");
  const slots = slotsFor("hourly", { from: "2009-03-01", to: "2009-03-01" }, ["2009-03-01"]);
  const rows = [
    { Hour: "2009-03-01T10:00:00+00:00", Line: "door", In: 16, Out: 14 },
    // Rows the page made from live records: any instant in the hour, one crossing each.
    { Hour: "2009-03-01T10:42:13.000+00:00", Line: "door", In: 1, Out: 0 },
    { Hour: "2009-03-01T11:02:00.000+00:00", Line: "gate", In: 0, Out: 1 },
  ];
  const [chart] = buildCharts(lines, "hourly", { id: "c", rows, totals: { In: 16, Out: 14, Lines: { door: {}, side: {} } } },
    slots, "UTC");
  assert.deepEqual(chart.series.map((s) => s.label), ["door in", "door out", "gate in", "gate out", "side in", "side out"]);
  assert.equal(chart.series[0].data[10], 17);
  assert.equal(chart.series[1].data[10], 14);
  assert.equal(chart.series[3].data[11], 1);
  assert.equal(chart.series[4].data[10], null); // a configured line nobody crossed
  assert.ok(hasData(chart));
  assert.equal(instantKey("2009-03-01T23:30:00+00:00", "hourly", "Europe/Berlin"), "2009-03-02 00");
  assert.equal(instantKey("2009-03-01T23:30:00+00:00", "daily", "Europe/Berlin"), "2009-03-02");
  assert.equal(instantKey("2009-03-04T12:00:00+00:00", "weekly", "UTC"), "2009-03-02");
  assert.equal(instantKey("not a time", "daily", "UTC"), null);
});

test("no rows: no data", () => {
  const [chart] = buildCharts(kind("occupancy"), "daily", { id: "c", rows: [], totals: null },
    slotsFor("daily", { from: "2009-03-01", to: "2009-03-07" }, []), "UTC");
  assert.ok(!hasData(chart));
});

test("demographics and mood charts come from the audience report's breakdowns", () => {
  const charts = demographicCharts({
    people: 3, passing_by: 3, interested: 2, conversion: 0.67, average_stop_seconds: 4, average_attention_seconds: 2,
    age: { "0-17": 0, "18-34": 2 }, gender: { male: 1, female: 1 }, emotion: { happy: 2, unknown: 0 },
  });
  assert.deepEqual(charts.map((c) => c.title), ["Interested by age", "Interested by gender", "Mood of the interested"]);
  assert.deepEqual(charts[0].series[0].data, [0, 2]);
  assert.deepEqual(demographicCharts({ people: 0, passing_by: 0, interested: 0, conversion: null,
    average_stop_seconds: null, average_attention_seconds: null }), []);
});

test("kinds are listed per entity type in reading order, unknown ones last", () => {
  const all = [kind("audience"), kind("queue-length"), kind("occupancy", "area"), kind("line-crossings"), kind("occupancy")];
  assert.deepEqual(kindsFor(all, "camera").map((k) => k.kind), ["occupancy", "line-crossings", "audience", "queue-length"]);
  assert.deepEqual(kindsFor(all, "area").map((k) => k.kind), ["occupancy"]);
});

test("reconnection backoff doubles, is capped, and is jittered", () => {
  const mid = () => 0.5;
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6].map((a) => backoffDelay(a, mid)), [1000, 2000, 4000, 8000, 16000, 30000, 30000]);
  assert.equal(backoffDelay(0, () => 0), 750);
  assert.equal(backoffDelay(0, () => 1), 1250);
  assert.equal(backoffDelay(50, () => 1), 37500);
});
