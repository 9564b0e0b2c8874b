// Floor calibration: click four or more floor points on the camera's picture (numbered,
// draggable markers), give each one's position on the floor in metres, or say the four points
// are the corners of a square of a given side; preview the reprojection error and a bird's-eye
// view, then save.
import { useEffect, useRef, useState } from "preact/hooks";

import { api, ApiError } from "../api";
import { useCameraName } from "../components/cameraName";
import { CanvasStage, dist, pointsAttr, type Pt, useCameraPicture } from "../components/CanvasStage";
import { ErrorMessage, Loading, Notice, PageHeader, ReadOnlyNote } from "../components/ui";
import { useSession } from "../session";
import type { PageProps } from ".";

type Mode = "points" | "square";

interface Stored {
  image_points: Pt[];
  floor_points_m: Pt[];
  reprojection_error_m: number | null;
  max_error_m: number | null;
  error?: string | null;
}

interface Preview {
  reprojection_error_px?: number | null;
  reprojection_error_m?: number | null;
  max_error_m?: number | null;
  floor_points?: Pt[];
  birdseye_jpeg?: string;
}

const MAX_POINTS = 100;

function fmt(v: number | null | undefined, digits = 3): string {
  return v === null || v === undefined || !Number.isFinite(v) ? "—" : v.toFixed(digits);
}

function parseMetres(text: string): number | null {
  const t = text.trim().replace(",", ".");
  if (!t) return null;
  const v = Number(t);
  return Number.isFinite(v) ? v : null;
}

export function CalibrationPage(props: PageProps) {
  const id = props.route[1];
  const cameraName = useCameraName(id);
  const base = `/cameras/${encodeURIComponent(id)}`;
  const { canEdit } = useSession();

  const [points, setPoints] = useState<Pt[]>([]);
  const [floor, setFloor] = useState<{ x: string; y: string }[]>([]);
  const [mode, setMode] = useState<Mode>("square");
  const [side, setSide] = useState("1");
  const [stored, setStored] = useState<Stored | null | undefined>(undefined);
  const [loadError, setLoadError] = useState<unknown>(null);
  const [preview, setPreview] = useState<Preview | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState("");
  const [busy, setBusy] = useState<"" | "preview" | "save" | "delete">("");
  const [reloadKey, setReloadKey] = useState(0);
  const dragging = useRef<number | null>(null);
  /** The marker the arrow keys move (the last one added, dragged or chosen with its number key). */
  const [active, setActive] = useState<number | null>(null);

  const picture = useCameraPicture(
    canEdit ? [`${base}/calibration_image`, `${base}/image`, `${base}/snapshot`] : [`${base}/image`, `${base}/snapshot`],
    reloadKey,
  );

  const load = (signal?: AbortSignal) => api.get<Stored>(`${base}/calibration`, signal)
    .then((s) => {
      setStored(s);
      setPoints(s.image_points.map((p) => [p[0], p[1]] as Pt));
      setFloor(s.floor_points_m.map((p) => ({ x: String(p[0]), y: String(p[1]) })));
      setMode(isUnitSquare(s) ? "square" : "points");
      if (isUnitSquare(s)) setSide(String(s.floor_points_m[1][0]));
      setLoadError(null);
    })
    .catch((e) => {
      if (signal?.aborted) return;
      if (e instanceof ApiError && e.status === 404) setStored(null);
      else setLoadError(e);
    });

  useEffect(() => {
    const ctl = new AbortController();
    load(ctl.signal);
    return () => ctl.abort();
  }, [id]);

  const editable = canEdit && stored !== undefined;
  const maxPoints = mode === "square" ? 4 : MAX_POINTS;

  const changed = () => { setPreview(null); setNotice(""); setError(null); };

  const addPoint = (p: Pt) => {
    if (points.length >= maxPoints) return;
    setPoints([...points, p]);
    setFloor([...floor, { x: "", y: "" }]);
    setActive(points.length);
    changed();
  };

  const onKey = (e: KeyboardEvent) => {
    if (!editable) return;
    if (/^[1-9]$/.test(e.key) && Number(e.key) <= points.length) { setActive(Number(e.key) - 1); return; }
    if (active === null || active >= points.length) return;
    if (e.key === "Delete" || e.key === "Backspace") { e.preventDefault(); removePoint(active); setActive(null); return; }
    const step = e.shiftKey ? 10 : 1;
    const moves: Record<string, Pt> = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
    const m = moves[e.key];
    if (!m) return;
    e.preventDefault();
    setPoints(points.map((q, j) => (j === active ? [q[0] + m[0], q[1] + m[1]] as Pt : q)));
    changed();
  };

  const removePoint = (i: number) => {
    setPoints(points.filter((_, j) => j !== i));
    setFloor(floor.filter((_, j) => j !== i));
    changed();
  };

  const floorPoints = (): Pt[] | string => {
    if (mode === "square") {
      const s = parseMetres(side);
      if (s === null || s <= 0) return "Enter the square's side in metres (a number above 0).";
      if (points.length !== 4) return "Click exactly four points, going round the square.";
      return [[0, 0], [s, 0], [s, s], [0, s]];
    }
    if (points.length < 4) return "Click at least four floor points.";
    const out: Pt[] = [];
    for (let i = 0; i < points.length; i++) {
      const x = parseMetres(floor[i]?.x ?? "");
      const y = parseMetres(floor[i]?.y ?? "");
      if (x === null || y === null) return `Enter the floor position of point ${i + 1} in metres.`;
      out.push([x, y]);
    }
    return out;
  };

  const run = async (what: "preview" | "save") => {
    const fp = floorPoints();
    if (typeof fp === "string") { setError(new Error(fp)); return; }
    setBusy(what);
    setError(null);
    setNotice("");
    try {
      if (what === "preview") {
        const body = mode === "square"
          ? { image_points: points, square_side: parseMetres(side) }
          : { image_points: points, floor_points: fp };
        try {
          setPreview(await api.post<Preview>(`${base}/calibration/preview`, body));
        } catch (e) {
          if (e instanceof ApiError && (e.status === 404 || e.status === 405) && e.detail === "Not Found") {
            throw new Error("This server cannot preview a calibration; save it to see its reprojection error.");
          }
          throw e;
        }
      } else {
        const saved = await api.put<Stored>(`${base}/calibration`, { image_points: points, floor_points_m: fp });
        setStored(saved);
        setNotice(`Calibration saved: reprojection error ${fmt(saved.reprojection_error_m)} m.`);
      }
    } catch (e) {
      setError(e);
    } finally {
      setBusy("");
    }
  };

  const remove = async () => {
    if (!window.confirm(`Remove the floor calibration of camera ${id}?`)) return;
    setBusy("delete");
    setError(null);
    try {
      await api.del(`${base}/calibration`);
      setStored(null);
      setPoints([]);
      setFloor([]);
      setPreview(null);
      setNotice("Calibration removed.");
    } catch (e) {
      setError(e);
    } finally {
      setBusy("");
    }
  };

  const onDown = (p: Pt, e: PointerEvent) => {
    const handle = (e.target as Element).getAttribute?.("data-point");
    if (handle !== null && handle !== undefined) {
      dragging.current = Number(handle);
      setActive(Number(handle));
      return;
    }
    // A click close to an existing marker grabs it rather than adding a point on top of it.
    const svg = (e.currentTarget as Element | null)?.closest?.("svg") as SVGSVGElement | null;
    const unit = svg ? svg.viewBox.baseVal.width / (svg.getBoundingClientRect().width || 1) : 1;
    const near = points.findIndex((q) => dist(p, q) <= 10 * unit);
    if (near >= 0) { dragging.current = near; setActive(near); return; }
    addPoint(p);
  };
  const onMove = (p: Pt) => {
    const i = dragging.current;
    if (i === null) return;
    setPoints(points.map((q, j) => (j === i ? p : q)));
    changed();
  };
  const onUp = () => { dragging.current = null; };

  const hintId = "calib-hint";
  const modeName = "calib-mode";

  return (
    <section class="calibration-page">
      <PageHeader title={`Calibrate camera ${cameraName}`} />
      {!canEdit ? <ReadOnlyNote /> : null}
      <ErrorMessage error={loadError} />
      {stored === undefined && !loadError ? <Loading what="calibration" /> : null}
      <div class="draw-layout calib">
        <div>
          <p id={hintId} class="tool-hint">
            {mode === "square"
              ? "Click the four corners of a square on the floor, going round it in order (not across). Drag a marker to move it, or press its number and the arrow keys."
              : "Click four or more points on the floor, spread over the picture with no three in a row, then give each one's position in metres. Drag a marker to move it, or press its number and the arrow keys."}
          </p>
          <CanvasStage picture={picture} label={`Picture of camera ${id}: click floor points`} describedBy={hintId}
                       editable={editable} onPointerDown={onDown} onPointerMove={onMove} onPointerUp={onUp}
                       onKeyDown={onKey}>
            {(unit) => (
              <>
                {points.length >= 2 ? (
                  <polygon class="shape zone" points={pointsAttr(points)} style={{ pointerEvents: "none", fillOpacity: mode === "square" && points.length === 4 ? 0.15 : 0 }} />
                ) : null}
                {points.map((p, i) => (
                  <g key={i}>
                    <circle class={`marker${i === active ? " active" : ""}`} cx={p[0]} cy={p[1]} r={11 * unit} data-point={i} />
                    <text class="marker-num" x={p[0]} y={p[1]} style={{ fontSize: `${13 * unit}px` }}>{i + 1}</text>
                  </g>
                ))}
              </>
            )}
          </CanvasStage>
          <div class="save-bar">
            <button type="button" class="btn plain" onClick={() => setReloadKey((k) => k + 1)}>Reload picture</button>
            <button type="button" class="btn plain" disabled={!editable || points.length === 0}
                    onClick={() => { setPoints([]); setFloor([]); changed(); }}>Clear points</button>
            {picture.failed ? <span class="error" role="alert">No picture from this camera.</span> : null}
          </div>
        </div>
        <div class="side-panel card">
          <h2>Floor positions</h2>
          <fieldset class="fieldset">
            <legend>How the points are placed on the floor</legend>
            <div class="radio-row">
              <input type="radio" id="calib-square" name={modeName} checked={mode === "square"} disabled={!editable}
                     onChange={() => { setMode("square"); if (points.length > 4) { setPoints(points.slice(0, 4)); setFloor(floor.slice(0, 4)); } changed(); }} />
              <label for="calib-square">The four points are a square</label>
            </div>
            <div class="radio-row">
              <input type="radio" id="calib-points" name={modeName} checked={mode === "points"} disabled={!editable}
                     onChange={() => { setMode("points"); changed(); }} />
              <label for="calib-points">I enter each point's position</label>
            </div>
            {mode === "square" ? (
              <div class="inline-field" style={{ marginTop: ".4rem" }}>
                <label for="calib-side">Square side (m)</label>
                <input id="calib-side" type="number" inputMode="decimal" min="0.01" step="0.01" value={side}
                       disabled={!editable} onInput={(e) => { setSide(e.currentTarget.value); changed(); }} />
              </div>
            ) : null}
          </fieldset>
          <div class="table-wrap">
            <table class="calib-table">
              <caption class="muted" style={{ textAlign: "left" }}>
                {points.length} of {mode === "square" ? "4" : "4 or more"} points
              </caption>
              <thead>
                <tr><th scope="col">Point (picture)</th>
                  {mode === "points" ? <><th scope="col">X (m)</th><th scope="col">Y (m)</th></> : <th scope="col">Floor (m)</th>}
                  <th scope="col"><span class="visually-hidden">Actions</span></th></tr>
              </thead>
              <tbody>
                {points.map((p, i) => {
                  const s = parseMetres(side) ?? 0;
                  const sq: Pt[] = [[0, 0], [s, 0], [s, s], [0, s]];
                  return (
                    <tr key={i}>
                      <th scope="row">{i + 1} <small class="muted px">({Math.round(p[0])}, {Math.round(p[1])} px)</small></th>
                      {mode === "points" ? (
                        <>
                          <td><input type="number" inputMode="decimal" step="any" aria-label={`Point ${i + 1} X (m)`}
                                     value={floor[i]?.x ?? ""} disabled={!editable}
                                     onInput={(e) => { const v = e.currentTarget.value; setFloor(floor.map((f, j) => (j === i ? { ...f, x: v } : f))); changed(); }} /></td>
                          <td><input type="number" inputMode="decimal" step="any" aria-label={`Point ${i + 1} Y (m)`}
                                     value={floor[i]?.y ?? ""} disabled={!editable}
                                     onInput={(e) => { const v = e.currentTarget.value; setFloor(floor.map((f, j) => (j === i ? { ...f, y: v } : f))); changed(); }} /></td>
                        </>
                      ) : <td>{sq[i] ? `${sq[i][0]}, ${sq[i][1]}` : "—"}</td>}
                      <td><button type="button" class="btn danger" disabled={!editable}
                                  aria-label={`Remove point ${i + 1}`} title={`Remove point ${i + 1}`}
                                  onClick={() => removePoint(i)}><span aria-hidden="true">✕</span></button></td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
          <div class="save-bar">
            <button type="button" class="btn plain" disabled={!editable || busy !== ""} aria-busy={busy === "preview"}
                    onClick={() => run("preview")}>Preview</button>
            <button type="button" class="btn primary" disabled={!editable || busy !== ""} aria-busy={busy === "save"}
                    onClick={() => run("save")}>Save calibration</button>
            <button type="button" class="btn danger" disabled={!editable || busy !== "" || !stored} aria-busy={busy === "delete"}
                    onClick={remove}>Delete calibration</button>
          </div>
          <ErrorMessage error={error} />
          {notice ? <Notice>{notice}</Notice> : null}
          <h3>Saved calibration</h3>
          {stored ? (
            <p>Reprojection error <strong data-testid="stored-error">{fmt(stored.reprojection_error_m)} m</strong>
              {" "}(largest {fmt(stored.max_error_m)} m) from {stored.image_points.length} points.
              {stored.error ? <span class="error"> {stored.error}</span> : null}</p>
          ) : stored === null ? <p class="muted">This camera has no floor calibration.</p> : null}
          {preview ? (
            <div aria-live="polite">
              <h3>Preview</h3>
              <p>Reprojection error{" "}
                <strong data-testid="preview-error">
                  {preview.reprojection_error_px !== undefined && preview.reprojection_error_px !== null
                    ? `${fmt(preview.reprojection_error_px, 2)} px` : `${fmt(preview.reprojection_error_m)} m`}
                </strong>
                {preview.reprojection_error_m !== undefined && preview.reprojection_error_px !== undefined
                  ? ` (${fmt(preview.reprojection_error_m)} m)` : null}
              </p>
              {preview.birdseye_jpeg ? (
                <img class="birdseye" src={`data:image/jpeg;base64,${preview.birdseye_jpeg}`}
                     alt={`Bird's-eye view of the floor of camera ${id} with this calibration`} />
              ) : <p class="muted">No bird's-eye picture.</p>}
            </div>
          ) : null}
        </div>
      </div>
    </section>
  );
}

function isUnitSquare(s: Stored): boolean {
  const f = s.floor_points_m;
  if (f.length !== 4) return false;
  const side = f[1][0];
  const want = [[0, 0], [side, 0], [side, side], [0, side]];
  return side > 0 && f.every((p, i) => Math.abs(p[0] - want[i][0]) < 1e-9 && Math.abs(p[1] - want[i][1]) < 1e-9);
}
