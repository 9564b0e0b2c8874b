// What the camera pages share: the camera as GET /cameras gives it, its status badge, the
// live preview image and the form fields a camera is edited with.
import { useEffect, useRef, useState } from "preact/hooks";

import { ApiError } from "../api";
import { Field } from "../components/ui";

export interface CameraStatus {
  status: string;
  frames: number;
  next_index?: number;
  total_frames?: number | null;
  fps: number;
  last_frame_time: string | null;
  restarts: number;
  last_error: string | null;
  reason?: string | null;
  skipped_frames?: number;
  write_error?: string | null;
}

export interface Camera {
  id: string;
  section: string;
  name: string;
  video_path: string;
  enabled: boolean;
  tags: string[];
  live_feed_enabled: boolean;
  start_time: string | null;
  frame_rate: number | null;
  dist_method: string | null;
  occupancy_threshold: number;
  notify_every_minutes: number;
  violation_threshold: number;
  emails: string[];
  enable_slack_notifications: boolean;
  daily_report: boolean;
  daily_report_time: string;
  roi: unknown[];
  counting_lines: unknown[];
  zones?: unknown[];
  entry_zones?: unknown[];
  calibration_image_points: unknown[];
  status: CameraStatus | null;
}

export interface StreamCheck {
  ok: boolean;
  width?: number | null;
  height?: number | null;
  fps?: number | null;
  error?: string | null;
}

/** The colour family of a status: ok, warn, bad or idle. */
export function statusTone(status: string | undefined): string {
  switch (status) {
    case "running":
      return "ok";
    case "connecting":
    case "reconnecting":
    case "stalled":
    case "degraded":
      return "warn";
    case "failed":
      return "bad";
    default:
      return "idle";
  }
}

export function cameraState(cam: Camera): string {
  if (cam.status?.status) return cam.status.status;
  return cam.enabled ? "idle" : "disabled";
}

export function StatusBadge(props: { state: string }) {
  return <span class={`cam-state ${statusTone(props.state)}`}>{props.state}</span>;
}

export function formatTime(iso: string | null | undefined): string {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toLocaleString(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
}

export function describeCheck(check: StreamCheck): string {
  if (!check.ok) return `The stream cannot be read: ${check.error ?? "no frame"}.`;
  const size = check.width && check.height ? `${check.width}×${check.height}` : "a frame";
  const fps = check.fps ? `, ${Math.round(check.fps * 10) / 10} fps` : "";
  return `The stream works: ${size}${fps}.`;
}

/**
 * The camera's latest annotated preview, fetched again every `everyMs` (with a cache-busting
 * query) while the page is visible; the previous picture stays until the next one arrives.
 */
export function Snapshot(props: { cameraId: string; name: string; everyMs?: number; enabled?: boolean }) {
  const [url, setUrl] = useState<string | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const urlRef = useRef<string | null>(null);
  const every = props.everyMs ?? 2000;

  useEffect(() => {
    let stopped = false;
    let timer: number | undefined;
    const ctl = new AbortController();
    const load = async () => {
      if (!document.hidden) {
        try {
          const res = await fetch(`/cameras/${encodeURIComponent(props.cameraId)}/snapshot?t=${Date.now()}`,
                                  { credentials: "same-origin", signal: ctl.signal });
          if (!res.ok) {
            let detail = `${res.status} ${res.statusText}`;
            try {
              const body = await res.json();
              if (body && typeof body.detail === "string") detail = body.detail;
            } catch { /* not JSON */ }
            throw new ApiError(res.status, detail);
          }
          const blob = await res.blob();
          if (stopped) return;
          const next = URL.createObjectURL(blob);
          if (urlRef.current) URL.revokeObjectURL(urlRef.current);
          urlRef.current = next;
          setUrl(next);
          setProblem(null);
        } catch (e) {
          if (stopped) return;
          setProblem(e instanceof ApiError ? e.detail : "The preview could not be loaded.");
        }
      }
      if (!stopped) timer = window.setTimeout(load, every);
    };
    if (props.enabled === false) {
      setProblem("The live preview is switched off for this camera.");
    } else {
      load();
    }
    return () => {
      stopped = true;
      ctl.abort();
      window.clearTimeout(timer);
    };
  }, [props.cameraId, every, props.enabled]);

  useEffect(() => () => {
    if (urlRef.current) URL.revokeObjectURL(urlRef.current);
  }, []);

  return (
    <div class="cam-preview">
      {url ? (
        <img src={url} alt={`Live preview of camera ${props.name}`} />
      ) : (
        <div class="cam-preview-empty">
          <span>{problem ?? "Loading preview…"}</span>
        </div>
      )}
      {url && problem ? <p class="cam-preview-stale">Not updating: {problem}</p> : null}
    </div>
  );
}

/** Checkbox with its label beside it. */
export function CheckField(props: { label: string; checked: boolean; disabled?: boolean; hint?: string;
                                     onChange: (v: boolean) => void }) {
  return (
    <div class="field check-field">
      <label>
        <input type="checkbox" checked={props.checked} disabled={props.disabled}
               onChange={(e) => props.onChange(e.currentTarget.checked)} />
        {" "}{props.label}
      </label>
      {props.hint ? <small class="hint">{props.hint}</small> : null}
    </div>
  );
}

/** A labelled text-like input bound to a string. */
export function TextField(props: {
  label: string; value: string; onInput: (v: string) => void; disabled?: boolean; hint?: string;
  type?: string; required?: boolean; placeholder?: string; autoComplete?: string; inputMode?: string;
  name?: string; step?: string; min?: string; pattern?: string;
}) {
  return (
    <Field label={props.label} hint={props.hint}>
      {(id, describedBy) => (
        <input id={id} name={props.name} type={(props.type ?? "text") as "text"} value={props.value}
               required={props.required} disabled={props.disabled} placeholder={props.placeholder}
               autoComplete={props.autoComplete ?? "off"} aria-describedby={describedBy}
               inputMode={props.inputMode as never} step={props.step} min={props.min} pattern={props.pattern}
               onInput={(e) => props.onInput(e.currentTarget.value)} />
      )}
    </Field>
  );
}
