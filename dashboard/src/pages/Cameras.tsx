// #/cameras: every camera's live preview and status; enable, disable, delete and add cameras.
import "./cameras.css";

import { useEffect, useRef, useState } from "preact/hooks";

import { api } from "../api";
import { ActionButton, ErrorMessage, Loading, Notice, PageHeader, ReadOnlyNote, useAsync, useInterval } from "../components/ui";
import { href } from "../router";
import { useSession } from "../session";
import {
  type Camera,
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

const STATUS_EVERY_MS = 3000;

export function CamerasPage(_props: PageProps) {
  const { canEdit } = useSession();
  const cameras = useAsync((signal) => api.get<Camera[]>("/cameras", signal));
  const [adding, setAdding] = useState(false);
  const [actionError, setActionError] = useState<unknown>(undefined);
  const [notice, setNotice] = useState<string | null>(null);
  useInterval(() => cameras.reload(), STATUS_EVERY_MS);

  const act = async (what: () => Promise<unknown>, done: string) => {
    setActionError(undefined);
    setNotice(null);
    await what();
    setNotice(done);
    cameras.reload();
  };

  return (
    <section class="cameras-page">
      <PageHeader title="Cameras">
        <button type="button" class="btn primary" disabled={!canEdit} aria-expanded={adding}
                aria-controls="add-camera" onClick={() => setAdding(!adding)}>
          {adding ? "Close the form" : "Add camera"}
        </button>
      </PageHeader>
      {!canEdit ? <ReadOnlyNote /> : null}
      {adding && canEdit ? (
        <AddCameraForm onAdded={(cam) => {
          setAdding(false);
          setNotice(`Camera ${cam.name || cam.id} added.`);
          cameras.reload();
        }} onCancel={() => setAdding(false)} />
      ) : null}
      <ErrorMessage error={actionError} />
      {notice ? <Notice>{notice}</Notice> : null}
      {cameras.data === undefined ? (
        cameras.error ? <ErrorMessage error={cameras.error} /> : <Loading what="cameras" />
      ) : cameras.data.length === 0 ? (
        <p class="empty-state">No cameras yet.{canEdit ? " Add one with “Add camera”." : ""}</p>
      ) : (
        <ul class="cam-grid" aria-label="Cameras">
          {cameras.data.map((cam) => (
            <CameraCard key={cam.id} cam={cam} canEdit={canEdit}
                        onToggle={() => act(() => api.put(`/cameras/${encodeURIComponent(cam.id)}/${cam.enabled ? "disable" : "enable"}`),
                                            `Camera ${cam.name || cam.id} ${cam.enabled ? "disabled" : "enabled"}.`)}
                        onDelete={() => act(() => api.del(`/cameras/${encodeURIComponent(cam.id)}`),
                                            `Camera ${cam.name || cam.id} deleted.`)}
                        onError={setActionError} />
          ))}
        </ul>
      )}
      {cameras.data !== undefined && cameras.error ? <ErrorMessage error={cameras.error} /> : null}
    </section>
  );
}

function CameraCard(props: { cam: Camera; canEdit: boolean; onToggle: () => Promise<void>;
                             onDelete: () => Promise<void>; onError: (e: unknown) => void }) {
  const { cam } = props;
  const name = cam.name || cam.id;
  const st = cam.status;
  const state = cameraState(cam);
  const headingId = `cam-${cam.id}-title`;
  return (
    <li class="cam-card card">
      <article aria-labelledby={headingId}>
        <div class="cam-card-head">
          <div class="cam-title">
            <h2 id={headingId}><a href={href("cameras", cam.id)}>{name}</a></h2>
            <span class="cam-id">id <code>{cam.id}</code>{cam.tags?.length ? ` · ${cam.tags.join(", ")}` : ""}</span>
          </div>
          <StatusBadge state={state} />
        </div>
        <Snapshot cameraId={cam.id} name={name} enabled={cam.live_feed_enabled} />
        <dl class="cam-facts">
          <div><dt>Frames/s</dt><dd>{st ? st.fps.toFixed(1) : "—"}</dd></div>
          <div><dt>Frames</dt><dd>{st ? st.frames.toLocaleString() + (st.total_frames ? ` of ${st.total_frames.toLocaleString()}` : "") : "—"}</dd></div>
          <div><dt>Restarts</dt><dd>{st ? st.restarts : "—"}</dd></div>
          <div class="wide"><dt>Last frame</dt><dd>{formatTime(st?.last_frame_time)}</dd></div>
        </dl>
        {st?.reason ? <p class="cam-reason">{st.reason}</p> : null}
        {st?.last_error ? <p class="cam-error"><strong>Last error:</strong> {st.last_error}</p> : null}
        {st?.write_error ? <p class="cam-error"><strong>Cannot write:</strong> {st.write_error}</p> : null}
        <div class="cam-actions">
          <a class="btn plain" href={href("cameras", cam.id)} aria-label={`Edit camera ${name}`}>Edit</a>
          <a class="btn plain" href={href("cameras", cam.id, "draw")} aria-label={`Draw on camera ${name}`}>Draw</a>
          <ActionButton disabled={!props.canEdit} label={`${cam.enabled ? "Disable" : "Enable"} camera ${name}`}
                        onClick={props.onToggle} onError={props.onError}>
            {cam.enabled ? "Disable" : "Enable"}
          </ActionButton>
          <ActionButton kind="danger" disabled={!props.canEdit} label={`Delete camera ${name}`}
                        confirm={`Delete camera ${name} (${cam.id})? Its settings are removed; its recorded data stays on disk.`}
                        onClick={props.onDelete} onError={props.onError}>
            Delete
          </ActionButton>
        </div>
      </article>
    </li>
  );
}

/** POST /cameras, after POST /cameras/check_stream said the stream can be read. */
function AddCameraForm(props: { onAdded: (cam: Camera) => void; onCancel: () => void }) {
  const [name, setName] = useState("");
  const [id, setId] = useState("");
  const [videoPath, setVideoPath] = useState("");
  const [tags, setTags] = useState("");
  const [frameRate, setFrameRate] = useState("");
  const [startTime, setStartTime] = useState("");
  const [enabled, setEnabled] = useState(true);
  const [liveFeed, setLiveFeed] = useState(true);
  const [check, setCheck] = useState<{ path: string; result: StreamCheck } | null>(null);
  const [checking, setChecking] = useState(false);
  const [saving, setSaving] = useState(false);
  const [error, setError] = useState<unknown>(undefined);
  const formRef = useRef<HTMLFormElement>(null);
  // Opened from the "Add camera" button: keyboard users start in its first field.
  useEffect(() => formRef.current?.querySelector("input")?.focus(), []);

  const runCheck = async (): Promise<StreamCheck | null> => {
    setError(undefined);
    setChecking(true);
    try {
      const result = await api.post<StreamCheck>("/cameras/check_stream", { video_path: videoPath.trim() });
      setCheck({ path: videoPath.trim(), result });
      return result;
    } catch (e) {
      setCheck(null);
      setError(e);
      return null;
    } finally {
      setChecking(false);
    }
  };

  const submit = async (e: Event) => {
    e.preventDefault();
    if (saving || checking) return;
    let result = check && check.path === videoPath.trim() ? check.result : null;
    if (!result) result = await runCheck();
    if (!result) return;
    if (!result.ok) {
      setError(new Error("Not saved: a camera needs a stream that can be read. Fix the video path or URL and try again."));
      return;
    }
    setSaving(true);
    setError(undefined);
    try {
      const body: Record<string, unknown> = {
        Name: name.trim(), VideoPath: videoPath.trim(), Enabled: enabled, LiveFeedEnabled: liveFeed,
        Tags: tags.trim(),
      };
      if (id.trim()) body.Id = id.trim();
      if (frameRate.trim()) body.FrameRate = frameRate.trim();
      if (startTime.trim()) body.StartTime = startTime.trim();
      const cam = await api.post<Camera>("/cameras", body);
      props.onAdded(cam);
    } catch (err) {
      setError(err);
    } finally {
      setSaving(false);
    }
  };

  const checked = check && check.path === videoPath.trim() ? check.result : null;
  return (
    <section id="add-camera" class="card add-camera" aria-labelledby="add-camera-title">
      <h2 id="add-camera-title">Add a camera</h2>
      <form onSubmit={submit} ref={formRef}>
        <div class="form-grid">
          <TextField label="Name" name="name" value={name} onInput={setName} required
                     hint="Shown on the dashboard, e.g. Front door." />
          <TextField label="Camera id" name="id" value={id} onInput={setId} pattern="[A-Za-z0-9_\-]{1,64}"
                     hint="Letters, digits, - or _. Made from the name when empty; never changes." />
          <div class="span-2">
            <TextField label="Video path or URL" name="video_path" value={videoPath} onInput={setVideoPath} required
                       placeholder="rtsp://camera.local/stream1"
                       hint="An rtsp://, rtsps://, http:// or https:// URL, a device (0, /dev/video0), or a file or folder inside the assets or data directory." />
          </div>
          <TextField label="Tags" name="tags" value={tags} onInput={setTags} hint="Comma-separated." />
          <TextField label="Frame rate (recordings)" name="frame_rate" value={frameRate} onInput={setFrameRate}
                     inputMode="decimal" hint="Frames per second when the file's own rate is wrong; empty trusts it." />
          <TextField label="Start time (recordings)" name="start_time" value={startTime} onInput={setStartTime}
                     placeholder="2009-03-01T10:00:00+00:00" hint="Wall-clock time of the first frame (ISO 8601); empty uses the file's time." />
          <div class="checks">
            <CheckField label="Enabled (process this camera)" checked={enabled} onChange={setEnabled} />
            <CheckField label="Live preview allowed" checked={liveFeed} onChange={setLiveFeed} />
          </div>
        </div>
        <div class="stream-check" aria-live="polite">
          {checking ? <p class="loading">Checking the stream…</p> : null}
          {checked && !checking ? (
            <p class={checked.ok ? "notice check-ok" : "error check-bad"} role={checked.ok ? "status" : "alert"}>
              {describeCheck(checked)}
            </p>
          ) : null}
        </div>
        <ErrorMessage error={error} />
        <div class="form-actions">
          <button type="button" class="btn plain" disabled={!videoPath.trim() || checking}
                  onClick={() => { void runCheck(); }}>Check stream</button>
          <button type="submit" class="btn primary" disabled={saving || checking || !videoPath.trim()}>
            {saving ? "Saving…" : "Save camera"}
          </button>
          <button type="button" class="btn plain" onClick={props.onCancel}>Cancel</button>
        </div>
      </form>
    </section>
  );
}
