// The heatmap of a camera (GET /metrics/cameras/<id>/heatmap: a grid over the image) drawn in
// the browser over a clean camera frame, with the opacity, what to show and smoothing.
//
// The picture under it is the cleanest one the user may read: an admin's raw frame
// (/calibration_image), a viewer's frame from the camera now (/image, allowed while the live
// feed is on), else the annotated preview (/snapshot); a grey canvas when none answers. The
// colours follow the server's heatmap.png (JET over the square root of value / largest).
import { useEffect, useMemo, useRef, useState } from "preact/hooks";

import { api, query } from "../api";
import { useSession } from "../session";
import { useCameraPicture } from "./CanvasStage";
import { ErrorMessage, Field } from "./ui";

const KINDS = { presence: "Where people were", violations: "Where people were too close" } as const;
const SMOOTHING = { "0": "None", "1": "Light", "2.5": "Strong" } as const;
/** What a blurred cell keeps at least, over the largest value (the server's BLUR_CUT). */
const BLUR_CUT = 1e-3;

interface HeatmapAnswer {
  grid: number[][];
  image_size?: { width: number; height: number } | null;
}

/** The grid smoothed with a Gaussian of `sigma` cells (zero outside), far tails dropped. */
export function blurGrid(grid: number[][], sigma: number): number[][] {
  if (sigma <= 0 || grid.length === 0) return grid;
  const radius = Math.ceil(3 * sigma);
  const weights: number[] = [];
  for (let i = -radius; i <= radius; i++) weights.push(Math.exp(-(i * i) / (2 * sigma * sigma)));
  const sum = weights.reduce((a, b) => a + b, 0);
  const w = weights.map((x) => x / sum);
  const rows = grid.length;
  const cols = grid[0].length;
  const pass = (src: number[][], horizontal: boolean) => src.map((row, r) => row.map((_, c) => {
    let v = 0;
    for (let k = -radius; k <= radius; k++) {
      const rr = horizontal ? r : r + k;
      const cc = horizontal ? c + k : c;
      if (rr >= 0 && rr < rows && cc >= 0 && cc < cols) v += src[rr][cc] * w[k + radius];
    }
    return v;
  }));
  const out = pass(pass(grid, true), false);
  const top = Math.max(0, ...out.map((row) => Math.max(...row)));
  return out.map((row) => row.map((v) => (v < BLUR_CUT * top ? 0 : v)));
}

/** OpenCV's JET colour map at level 0..1 (blue, cyan, yellow, red). */
export function jet(level: number): [number, number, number] {
  const ch = (x: number) => Math.round(255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * level - x))));
  return [ch(3), ch(2), ch(1)];
}

/** Paints the grid's non-empty cells (one canvas pixel per cell), colour by sqrt(value / max). */
function paint(canvas: HTMLCanvasElement, grid: number[][]) {
  const rows = grid.length;
  const cols = rows ? grid[0].length : 0;
  canvas.width = Math.max(1, cols);
  canvas.height = Math.max(1, rows);
  const ctx = canvas.getContext("2d");
  if (!ctx || !rows || !cols) return;
  const top = Math.max(0, ...grid.map((row) => Math.max(...row)));
  const image = ctx.createImageData(cols, rows);
  if (top > 0) {
    grid.forEach((row, r) => row.forEach((v, c) => {
      if (!(v > 0)) return;
      const [red, green, blue] = jet(Math.sqrt(v / top));
      const at = 4 * (r * cols + c);
      image.data.set([red, green, blue, 255], at);
    }));
  }
  ctx.putImageData(image, 0, 0);
}

export function HeatmapOverlay(props: { camera: string; cameraName: string; from: string; to: string }) {
  const { canEdit } = useSession();
  const [opacity, setOpacity] = useState(0.6);
  const [kind, setKind] = useState<keyof typeof KINDS>("presence");
  const [blur, setBlur] = useState<keyof typeof SMOOTHING>("1");
  const [answer, setAnswer] = useState<HeatmapAnswer | null>(null);
  const [error, setError] = useState<unknown>(undefined);
  const canvas = useRef<HTMLCanvasElement>(null);

  const base = `/cameras/${encodeURIComponent(props.camera)}`;
  const picture = useCameraPicture(
    canEdit ? [`${base}/calibration_image`, `${base}/image`, `${base}/snapshot`] : [`${base}/image`, `${base}/snapshot`],
    0,
  );

  useEffect(() => {
    const ctl = new AbortController();
    setAnswer(null);
    setError(undefined);
    api.get<HeatmapAnswer>(`/metrics${base}/heatmap` + query({ from_date: props.from, to_date: props.to, kind }), ctl.signal)
      .then(setAnswer)
      .catch((e) => { if (!ctl.signal.aborted) setError(e); });
    return () => ctl.abort();
  }, [base, props.from, props.to, kind]);

  const grid = useMemo(() => (answer ? blurGrid(answer.grid, Number(blur)) : null), [answer, blur]);
  useEffect(() => {
    if (grid && canvas.current) paint(canvas.current, grid);
  }, [answer, blur, canvas.current]);
  const empty = grid !== null && !grid.some((row) => row.some((v) => v > 0));

  const size = picture.size ?? answer?.image_size ?? null;
  const ready = answer !== null && (picture.size !== null || picture.failed);
  const range = props.from === props.to ? props.from : `${props.from} to ${props.to}`;

  return (
    <section class="card heatmap" aria-labelledby="heatmap-heading">
      <h2 id="heatmap-heading">Heatmap</h2>
      <div class="row heatmap-controls">
        <Field label="Heatmap opacity">
          {(id) => (
            <div class="range-with-value">
              <input id={id} type="range" min={0} max={1} step={0.05} value={opacity}
                     aria-valuetext={`${Math.round(opacity * 100)}%`}
                     onInput={(e) => setOpacity(Number((e.target as HTMLInputElement).value))} />
              <span aria-hidden="true">{Math.round(opacity * 100)}%</span>
            </div>
          )}
        </Field>
        <Field label="Heatmap shows">
          {(id) => (
            <select id={id} value={kind} onChange={(e) => setKind((e.target as HTMLSelectElement).value as keyof typeof KINDS)}>
              {Object.entries(KINDS).map(([k, label]) => <option key={k} value={k}>{label}</option>)}
            </select>
          )}
        </Field>
        <Field label="Smoothing">
          {(id) => (
            <select id={id} value={blur} onChange={(e) => setBlur((e.target as HTMLSelectElement).value as keyof typeof SMOOTHING)}>
              {Object.entries(SMOOTHING).map(([k, label]) => <option key={k} value={k}>{label}</option>)}
            </select>
          )}
        </Field>
      </div>
      <p class="hint">
        Blue: little time, red: most, over {range}; drawn on {picture.failed ? "a blank frame (no camera picture could be read)"
          : "a frame from the camera"}.
        {empty ? " Nobody was seen in this range." : ""}
      </p>
      {error ? <ErrorMessage error={error} /> : (
        <div class={`heatmap-frame${ready ? "" : " is-loading"}`} aria-busy={!ready} role="img"
             aria-label={`${KINDS[kind]} on ${props.cameraName}, ${range}`}
             data-opacity={opacity.toFixed(2)} data-ready={ready ? "true" : "false"}
             style={size ? { aspectRatio: `${size.width} / ${size.height}` } : undefined}>
          {!picture.failed && picture.src ? (
            <img src={picture.src} alt="" onLoad={picture.onLoad} onError={picture.onError} />
          ) : null}
          <canvas ref={canvas} aria-hidden="true" style={{ opacity }} />
        </div>
      )}
    </section>
  );
}
