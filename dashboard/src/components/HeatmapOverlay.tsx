// The heatmap of a camera drawn by the processor over its latest snapshot
// (GET /metrics/cameras/<id>/heatmap.png), with the opacity, what to show and smoothing.
import { useEffect, useState } from "preact/hooks";

import { query } from "../api";
import { Field } from "./ui";

const KINDS = { presence: "Where people were", violations: "Where people were too close" } as const;
const SMOOTHING = { "0": "None", "1": "Light", "2.5": "Strong" } as const;

export function HeatmapOverlay(props: { camera: string; cameraName: string; from: string; to: string }) {
  const [opacity, setOpacity] = useState(0.6);
  const [applied, setApplied] = useState(0.6);
  const [kind, setKind] = useState<keyof typeof KINDS>("presence");
  const [blur, setBlur] = useState<keyof typeof SMOOTHING>("1");
  const [failed, setFailed] = useState(false);
  const [loading, setLoading] = useState(true);

  // The picture is drawn by the server: ask again once the slider rests, not on every step.
  useEffect(() => {
    const t = window.setTimeout(() => setApplied(opacity), 250);
    return () => window.clearTimeout(t);
  }, [opacity]);

  const src = `/metrics/cameras/${encodeURIComponent(props.camera)}/heatmap.png` + query({
    from_date: props.from, to_date: props.to, kind, alpha: applied.toFixed(2), blur,
  });
  useEffect(() => { setFailed(false); setLoading(true); }, [src]);

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
        Blue: little time, red: most, over {props.from === props.to ? props.from : `${props.from} to ${props.to}`};
        drawn on the camera's latest snapshot.
      </p>
      {failed ? (
        <p class="no-data">The heatmap could not be drawn for this camera and range.</p>
      ) : (
        <div class={`heatmap-frame${loading ? " is-loading" : ""}`} aria-busy={loading}>
          <img src={src} alt={`${KINDS[kind]} on ${props.cameraName}, ${props.from} to ${props.to}`}
               onLoad={() => setLoading(false)} onError={() => { setFailed(true); setLoading(false); }} />
        </div>
      )}
    </section>
  );
}
