// One chart: a Chart.js canvas described for screen readers, with the same numbers in a data
// table underneath (collapsed), and a clear "no data" instead of an empty frame.
import {
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  Filler,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Tooltip,
} from "chart.js";
import { useEffect, useRef } from "preact/hooks";

import { type ChartSpec, hasData } from "./ChartKinds";

Chart.register(BarController, BarElement, CategoryScale, Filler, Legend, LinearScale, LineController,
  LineElement, PointElement, Tooltip);

/** Distinguishable colours (Okabe-Ito), readable on white. */
const COLOURS = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#555555", "#8c6d00"];

function colour(i: number): string {
  return COLOURS[i % COLOURS.length];
}

function describe(spec: ChartSpec, context: string): string {
  const first = spec.slots[0]?.label;
  const last = spec.slots[spec.slots.length - 1]?.label;
  const what = spec.series.map((s) => s.label).join(", ");
  const span = first && last && first !== last ? ` from ${first} to ${last}` : first ? ` for ${first}` : "";
  return `${spec.type === "bar" ? "Bar" : "Line"} chart of ${spec.title.toLowerCase()} (${what}${spec.unit ? `, ${spec.unit}` : ""})${span}${context ? `, ${context}` : ""}. The data table below lists the values.`;
}

function format(v: number | null): string {
  if (v === null) return "–";
  return Number.isInteger(v) ? String(v) : v.toFixed(2);
}

export function ChartView(props: { spec: ChartSpec; context?: string; emptyText?: string; hideTitle?: boolean }) {
  const { spec } = props;
  const canvas = useRef<HTMLCanvasElement>(null);
  const chart = useRef<Chart | null>(null);
  const any = hasData(spec);

  // Created once per kind of chart; later data changes update it in place (no flicker when
  // live records arrive).
  useEffect(() => {
    if (!any || !canvas.current) return;
    const c = new Chart(canvas.current, {
      type: spec.type,
      data: { labels: [], datasets: [] },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: "index", intersect: false },
        spanGaps: false,
        scales: {
          // offset: the first and last points sit inside the frame, not on its edge.
          x: { offset: true, ticks: { autoSkip: true, maxRotation: 0, autoSkipPadding: 12 } },
          // Bars count people, visits or entries: whole numbers on the axis.
          y: { beginAtZero: true, ticks: { precision: spec.type === "bar" ? 0 : undefined },
               title: { display: !!spec.unit, text: spec.unit } },
        },
        plugins: { legend: { position: "bottom", labels: { boxWidth: 14 } } },
      },
    });
    chart.current = c;
    return () => {
      c.destroy();
      chart.current = null;
    };
  }, [any, spec.type, spec.unit]);

  useEffect(() => {
    const c = chart.current;
    if (!c) return;
    c.data.labels = spec.slots.map((s) => s.label);
    c.data.datasets = spec.series.map((s, i) => ({
      label: s.label,
      data: s.data,
      backgroundColor: colour(i),
      borderColor: colour(i),
      borderWidth: spec.type === "line" ? 2 : 0,
      pointRadius: spec.type === "line" ? 3 : undefined,
    }));
    c.update();
  });

  const titleId = `chart-${spec.id}-title`;
  return (
    <figure class="chart" aria-labelledby={titleId}>
      <figcaption id={titleId} class={props.hideTitle ? "visually-hidden" : "chart-title"}>{spec.title}</figcaption>
      {any ? (
        <>
          <div class="chart-box">
            <canvas ref={canvas} role="img" aria-label={describe(spec, props.context ?? "")} />
          </div>
          <details class="chart-table">
            <summary>Data table: {spec.title}</summary>
            <div class="table-wrap">
              <table>
                <caption class="visually-hidden">{spec.title}{props.context ? `, ${props.context}` : ""}</caption>
                <thead>
                  <tr>
                    <th scope="col">{spec.axis}</th>
                    {spec.series.map((s) => <th scope="col" key={s.label}>{s.label}</th>)}
                  </tr>
                </thead>
                <tbody>
                  {spec.slots.map((slot, i) => spec.series.some((s) => s.data[i] !== null) ? (
                    <tr key={slot.key}>
                      <th scope="row">{slot.label}</th>
                      {spec.series.map((s) => <td key={s.label}>{format(s.data[i])}</td>)}
                    </tr>
                  ) : null)}
                </tbody>
              </table>
            </div>
          </details>
        </>
      ) : (
        <p class="no-data">{props.emptyText ?? "No data for this period."}</p>
      )}
    </figure>
  );
}
