// #/cameras/<id>: one camera's settings (PUT /cameras/<id>), with tabs to its drawing and
// calibration pages (#/cameras/<id>/draw, #/cameras/<id>/calibration).
import "./cameras.css";

import { useEffect, useState } from "preact/hooks";

import { api, ApiError } from "../api";
import { ActionButton, ErrorMessage, Field, Loading, Notice, PageHeader, ReadOnlyNote, useAsync, useInterval } from "../components/ui";
import { href, navigate } from "../router";
import { useSession } from "../session";
import { CalibrationPage } from "./Calibration";
import { CameraDrawPage } from "./CameraDraw";
import {
  type Camera,
  type CameraStatus,
  CheckField,
  cameraState,
  describeCheck,
  formatTime,
  Snapshot,
  StatusBadge,
  type StreamCheck,
  TextField,
} from "./cameraCommon";
import type { PageProps } from ".";

const DIST_METHODS = ["", "CalibratedDistance", "CenterPointsDistance", "FourCornerPointsDistance"];

/** Route: ["cameras", "<id>"] settings; [..., "draw"] drawing; [..., "calibration"]. */
export function CameraPage(props: PageProps) {
  const id = props.route[1];
  const tab = props.route[2] === "draw" || props.route[2] === "calibration" ? props.route[2] : "settings";
  return (
    <>
      <CameraTabs id={id} active={tab} />
      {tab === "draw" ? <CameraDrawPage route={props.route} />
        : tab === "calibration" ? <CalibrationPage route={props.route} />
        : <CameraSettings id={id} />}
    </>
  );
}

function CameraTabs(props: { id: string; active: string }) {
  const tabs: [string, string, string][] = [
    ["settings", "Settings", href("cameras", props.id)],
    ["draw", "Drawing", href("cameras", props.id, "draw")],
    ["calibration", "Calibration", href("cameras", props.id, "calibration")],
  ];
  return (
    <nav class="camera-tabs" aria-label={`Camera ${props.id}`}>
      <ul>
        <li class="back"><a href={href("cameras")}>← All cameras</a></li>
        {tabs.map(([key, label, link]) => (
          <li key={key}>
            <a href={link} aria-current={props.active === key ? "page" : undefined}>{label}</a>
          </li>
        ))}
      </ul>
    </nav>
  );
}

interface FormState {
  name: string;
  videoPath: string;
  enabled: boolean;
  liveFeed: boolean;
  tags: string;
  frameRate: string;
  startTime: string;
  distMethod: string;
  occupancyThreshold: string;
  notifyEveryMinutes: string;
  violationThreshold: string;
  emails: string;
  slack: boolean;
  dailyReport: boolean;
  dailyReportTime: string;
}

function formOf(cam: Camera): FormState {
  return {
    name: cam.name ?? "",
    videoPath: cam.video_path ?? "",
    enabled: cam.enabled,
    liveFeed: cam.live_feed_enabled,
    tags: (cam.tags ?? []).join(", "),
    frameRate: cam.frame_rate == null ? "" : String(cam.frame_rate),
    startTime: cam.start_time ?? "",
    distMethod: cam.dist_method ?? "",
    occupancyThreshold: String(cam.occupancy_threshold ?? 0),
    notifyEveryMinutes: String(cam.notify_every_minutes ?? 0),
    violationThreshold: String(cam.violation_threshold ?? 0),
    emails: (cam.emails ?? []).join(", "),
    slack: !!cam.enable_slack_notifications,
    dailyReport: !!cam.daily_report,
    dailyReportTime: cam.daily_report_time ?? "06:00",
  };
}

/** The INI keys whose value differs from the camera as loaded. */
function changes(before: FormState, after: FormState): Record<string, unknown> {
  const keys: [keyof FormState, string][] = [
    ["name", "Name"], ["videoPath", "VideoPath"], ["enabled", "Enabled"], ["liveFeed", "LiveFeedEnabled"],
    ["tags", "Tags"], ["frameRate", "FrameRate"], ["startTime", "StartTime"], ["distMethod", "DistMethod"],
    ["occupancyThreshold", "OccupancyThreshold"], ["notifyEveryMinutes", "NotifyEveryMinutes"],
    ["violationThreshold", "ViolationThreshold"], ["emails", "Emails"], ["slack", "EnableSlackNotifications"],
    ["dailyReport", "DailyReport"], ["dailyReportTime", "DailyReportTime"],
  ];
  const out: Record<string, unknown> = {};
  for (const [field, key] of keys) {
    const a = before[field];
    const b = after[field];
    if (typeof b === "string" ? b.trim() !== String(a).trim() : a !== b) {
      out[key] = typeof b === "string" ? b.trim() : b;
    }
  }
  return out;
}

function CameraSettings(props: { id: string }) {
  const { canEdit } = useSession();
  const path = `/cameras/${encodeURIComponent(props.id)}`;
  const camera = useAsync((signal) => api.get<Camera>(path, signal), [props.id]);
  const [status, setStatus] = useState<CameraStatus | null>(null);
  const [form, setForm] = useState<FormState | null>(null);
  const [loaded, setLoaded] = useState<FormState | null>(null);
  const [error, setError] = useState<unknown>(undefined);
  const [notice, setNotice] = useState<string | null>(null);
  const [check, setCheck] = useState<{ path: string; result: StreamCheck } | null>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    if (camera.data) {
      const f = formOf(camera.data);
      setForm(f);
      setLoaded(f);
      setStatus(camera.data.status);
    }
  }, [camera.data]);

  useInterval(() => {
    api.get<CameraStatus>(`/status/${encodeURIComponent(props.id)}`).then(setStatus).catch(() => {});
  }, 3000);

  if (camera.error instanceof ApiError && camera.error.status === 404) {
    return (
      <section class="camera-page">
        <PageHeader title={`Camera ${props.id}`} />
        <p class="error" role="alert">There is no camera with id {props.id}.</p>
        <p><a href={href("cameras")}>Back to the cameras</a></p>
      </section>
    );
  }
  if (!camera.data || !form || !loaded) {
    return (
      <section class="camera-page">
        <PageHeader title={`Camera ${props.id}`} />
        {camera.error ? <ErrorMessage error={camera.error} /> : <Loading what="the camera" />}
      </section>
    );
  }
  const cam = camera.data;
  const title = cam.name || cam.id;
  const set = <K extends keyof FormState>(key: K) => (value: FormState[K]) => {
    setForm({ ...form, [key]: value });
    setNotice(null);
  };
  const diff = changes(loaded, form);
  const dirty = Object.keys(diff).length > 0;
  const pathChanged = "VideoPath" in diff;
  const checked = check && check.path === form.videoPath.trim() ? check.result : null;

  const runCheck = async (): Promise<StreamCheck | null> => {
    setError(undefined);
    try {
      const result = await api.post<StreamCheck>("/cameras/check_stream", { video_path: form.videoPath.trim() });
      setCheck({ path: form.videoPath.trim(), result });
      return result;
    } catch (e) {
      setError(e);
      return null;
    }
  };

  const save = async (e: Event) => {
    e.preventDefault();
    if (!dirty || busy) return;
    setBusy(true);
    setError(undefined);
    setNotice(null);
    try {
      if (pathChanged) {
        const result = checked ?? await runCheck();
        if (!result) return;
        if (!result.ok) {
          setError(new Error("Not saved: the new video path or URL gives no picture. Fix it and try again."));
          return;
        }
      }
      const updated = await api.put<Camera>(path, diff);
      const f = formOf(updated);
      setForm(f);
      setLoaded(f);
      setStatus(updated.status);
      setNotice("Saved. Only this camera restarts.");
      camera.reload();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  const shapes = [
    [cam.roi?.length ? "a region of interest" : "no region of interest (whole image)"],
    [`${cam.counting_lines?.length ?? 0} counting line(s)`],
    [`${cam.zones?.length ?? 0} zone(s), ${cam.entry_zones?.length ?? 0} entry zone(s)`],
    [cam.calibration_image_points?.length ? "floor calibration set" : "no floor calibration"],
  ];

  return (
    <section class="camera-page">
      <PageHeader title={`Camera ${title}`}>
        <StatusBadge state={status?.status ?? cameraState(cam)} />
      </PageHeader>
      {!canEdit ? <ReadOnlyNote /> : null}
      <div class="camera-layout">
        <form class="camera-form card" onSubmit={save} aria-label={`Settings of camera ${title}`}>
          <fieldset>
            <legend>Camera</legend>
            <div class="form-grid">
              <Field label="Camera id" hint="Fixed when the camera was added.">
                {(fid, d) => <input id={fid} value={cam.id} readOnly aria-describedby={d} />}
              </Field>
              <TextField label="Name" name="name" value={form.name} onInput={set("name")} disabled={!canEdit} />
              <div class="span-2">
                <TextField label="Video path or URL" name="video_path" value={form.videoPath} onInput={set("videoPath")}
                           disabled={!canEdit} required
                           hint="A new stream is checked before it is saved." />
              </div>
              <TextField label="Tags" name="tags" value={form.tags} onInput={set("tags")} disabled={!canEdit}
                         hint="Comma-separated." />
              <TextField label="Frame rate (recordings)" name="frame_rate" value={form.frameRate} onInput={set("frameRate")}
                         disabled={!canEdit} inputMode="decimal" hint="Empty trusts the file." />
              <TextField label="Start time (recordings)" name="start_time" value={form.startTime} onInput={set("startTime")}
                         disabled={!canEdit} hint="ISO 8601; empty uses the file's time." />
              <Field label="Distance method" hint="Empty uses the social distancing default.">
                {(fid, d) => (
                  <select id={fid} value={form.distMethod} disabled={!canEdit} aria-describedby={d}
                          onChange={(e) => set("distMethod")(e.currentTarget.value)}>
                    {DIST_METHODS.map((m) => <option key={m} value={m}>{m || "Default"}</option>)}
                  </select>
                )}
              </Field>
              <TextField label="Occupancy threshold" name="occupancy_threshold" type="number" min="0"
                         value={form.occupancyThreshold} onInput={set("occupancyThreshold")} disabled={!canEdit}
                         hint="People above which the camera is over capacity; 0 turns it off." />
              <div class="checks">
                <CheckField label="Enabled (process this camera)" checked={form.enabled} onChange={set("enabled")}
                            disabled={!canEdit} />
                <CheckField label="Live preview allowed" checked={form.liveFeed} onChange={set("liveFeed")}
                            disabled={!canEdit} />
              </div>
            </div>
          </fieldset>
          <fieldset>
            <legend>Notifications</legend>
            <div class="form-grid">
              <TextField label="Notify every (minutes)" name="notify_every_minutes" type="number" min="0"
                         value={form.notifyEveryMinutes} onInput={set("notifyEveryMinutes")} disabled={!canEdit}
                         hint="0 sends none." />
              <TextField label="Violation threshold" name="violation_threshold" type="number" min="0"
                         value={form.violationThreshold} onInput={set("violationThreshold")} disabled={!canEdit} />
              <div class="span-2">
                <TextField label="E-mail addresses" name="emails" value={form.emails} onInput={set("emails")}
                           disabled={!canEdit} hint="Comma-separated." />
              </div>
              <TextField label="Daily report time" name="daily_report_time" type="time" value={form.dailyReportTime}
                         onInput={set("dailyReportTime")} disabled={!canEdit} />
              <div class="checks">
                <CheckField label="Daily report" checked={form.dailyReport} onChange={set("dailyReport")} disabled={!canEdit} />
                <CheckField label="Slack notifications" checked={form.slack} onChange={set("slack")} disabled={!canEdit} />
              </div>
            </div>
          </fieldset>
          <div aria-live="polite">
            {pathChanged && checked ? (
              <p class={checked.ok ? "notice" : "error"} role={checked.ok ? "status" : "alert"}>{describeCheck(checked)}</p>
            ) : null}
          </div>
          <ErrorMessage error={error} />
          {notice ? <Notice>{notice}</Notice> : null}
          <div class="form-actions">
            <button type="submit" class="btn primary" disabled={!canEdit || !dirty || busy}>
              {busy ? "Saving…" : "Save changes"}
            </button>
            {pathChanged ? (
              <button type="button" class="btn plain" disabled={!canEdit || busy} onClick={() => { void runCheck(); }}>
                Check stream
              </button>
            ) : null}
            <button type="button" class="btn plain" disabled={!dirty || busy}
                    onClick={() => { setForm(loaded); setError(undefined); setCheck(null); }}>
              Undo changes
            </button>
          </div>
        </form>
        <div class="camera-side">
          <section class="card" aria-labelledby="cam-live-title">
            <h2 id="cam-live-title">Live preview</h2>
            <Snapshot cameraId={cam.id} name={title} enabled={cam.live_feed_enabled} />
            <dl class="cam-facts">
              <div><dt>Frames/s</dt><dd>{status ? status.fps.toFixed(1) : "—"}</dd></div>
              <div><dt>Frames</dt><dd>{status ? status.frames.toLocaleString() + (status.total_frames ? ` of ${status.total_frames.toLocaleString()}` : "") : "—"}</dd></div>
              <div><dt>Restarts</dt><dd>{status ? status.restarts : "—"}</dd></div>
              <div class="wide"><dt>Last frame</dt><dd>{formatTime(status?.last_frame_time)}</dd></div>
            </dl>
            {status?.reason ? <p class="cam-reason">{status.reason}</p> : null}
            {status?.last_error ? <p class="cam-error"><strong>Last error:</strong> {status.last_error}</p> : null}
          </section>
          <section class="card" aria-labelledby="cam-shapes-title">
            <h2 id="cam-shapes-title">Drawn on the picture</h2>
            <ul class="shapes-summary">
              {shapes.map(([text]) => <li key={text}>{text}</li>)}
            </ul>
            <p class="form-actions">
              <a class="btn plain" href={href("cameras", cam.id, "draw")}>Draw regions and lines</a>
              <a class="btn plain" href={href("cameras", cam.id, "calibration")}>Calibrate the floor</a>
            </p>
          </section>
          <section class="card" aria-labelledby="cam-danger-title">
            <h2 id="cam-danger-title">Remove</h2>
            <p class="hint">Removes the camera's settings; its recorded data stays on disk.</p>
            <ActionButton kind="danger" disabled={!canEdit} label={`Delete camera ${title}`}
                          confirm={`Delete camera ${title} (${cam.id})?`}
                          onClick={async () => { await api.del(path); navigate("cameras"); }}
                          onError={setError}>
              Delete camera
            </ActionButton>
          </section>
        </div>
      </div>
    </section>
  );
}
