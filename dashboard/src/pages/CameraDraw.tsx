// Drawing on a camera's picture: region of interest, counting lines (with their in/out
// direction), zones, entry zones and the engagement target. Shapes are drawn with the pointer
// (mouse, pen, touch), edited by dragging their points, and listed beside the picture with
// rename / swap / delete buttons for keyboard users. Save writes each changed kind through the API.
import { useEffect, useRef, useState } from "preact/hooks";

import { api, ApiError } from "../api";
import { useCameraName } from "../components/cameraName";
import { CanvasStage, dist, pointsAttr, type Pt, SvgLabel, useCameraPicture } from "../components/CanvasStage";
import { ErrorMessage, Loading, Notice, PageHeader, ReadOnlyNote } from "../components/ui";
import { useSession } from "../session";
import type { PageProps } from ".";

type Kind = "roi" | "line" | "zone" | "entry" | "target";
type Tool = "select" | Kind;
type Group = "roi" | "lines" | "zones" | "target";

interface Line { name: string; start: Pt; end: Pt }
interface Zone { name: string; points: Pt[] }
interface Shapes { roi: Pt[]; lines: Line[]; zones: Zone[]; entry: Zone[]; target: Pt[] }
interface Sel { kind: Kind; index: number }

const GROUP_OF: Record<Kind, Group> = { roi: "roi", line: "lines", zone: "zones", entry: "zones", target: "target" };
const KIND_NAME: Record<Kind, string> = {
  roi: "Region of interest", line: "Counting line", zone: "Zone", entry: "Entry zone", target: "Engagement target",
};
const TOOL_HINT: Record<Tool, string> = {
  select: "Drag a point or a shape to move it; double-click a zone's edge to add a corner. Delete removes the selected corner or shape; arrow keys nudge it.",
  roi: "Click each corner of the region of interest; click the first point (or press Enter / Finish) to close it.",
  line: "Click the line's start, then its end (or drag from start to end). 'In' is the side the arrow points to.",
  zone: "Click each corner of the zone; click the first point (or press Enter / Finish) to close it.",
  entry: "Click each corner of the entry zone; click the first point (or press Enter / Finish) to close it.",
  target: "Click once for a point target, or click two points for a segment (for example the display's edge).",
};
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

type Drag =
  | { type: "vertex"; sel: Sel; vertex: number }
  | { type: "shape"; sel: Sel; last: Pt }
  | null;

function pts(v: unknown): Pt[] {
  return Array.isArray(v) ? v.map((p) => [Number(p[0]), Number(p[1])] as Pt) : [];
}

function uniqueName(prefix: string, taken: string[]): string {
  for (let i = 1; ; i++) if (!taken.includes(`${prefix}_${i}`)) return `${prefix}_${i}`;
}

function shapePoints(s: Shapes, sel: Sel): Pt[] {
  switch (sel.kind) {
    case "roi": return s.roi;
    case "target": return s.target;
    case "line": { const l = s.lines[sel.index]; return l ? [l.start, l.end] : []; }
    case "zone": return s.zones[sel.index]?.points ?? [];
    case "entry": return s.entry[sel.index]?.points ?? [];
  }
}

function withPoints(s: Shapes, sel: Sel, points: Pt[]): Shapes {
  switch (sel.kind) {
    case "roi": return { ...s, roi: points };
    case "target": return { ...s, target: points };
    case "line": return { ...s, lines: s.lines.map((l, i) => (i === sel.index ? { ...l, start: points[0], end: points[1] } : l)) };
    case "zone": return { ...s, zones: s.zones.map((z, i) => (i === sel.index ? { ...z, points } : z)) };
    case "entry": return { ...s, entry: s.entry.map((z, i) => (i === sel.index ? { ...z, points } : z)) };
  }
}

function without(s: Shapes, sel: Sel): Shapes {
  switch (sel.kind) {
    case "roi": return { ...s, roi: [] };
    case "target": return { ...s, target: [] };
    case "line": return { ...s, lines: s.lines.filter((_, i) => i !== sel.index) };
    case "zone": return { ...s, zones: s.zones.filter((_, i) => i !== sel.index) };
    case "entry": return { ...s, entry: s.entry.filter((_, i) => i !== sel.index) };
  }
}

const same = (a: Sel | null, b: Sel) => !!a && a.kind === b.kind && a.index === b.index;

interface Loaded {
  shapes: Shapes;
  zonesApi: boolean;
  targetApi: boolean;
  /** Why the target cannot be set here ("" when it can). */
  targetNote: string;
  /** The processor-wide target cameras without their own use (null: the image's bottom edge). */
  targetDefault: Pt[] | null;
}

async function loadShapes(id: string, signal: AbortSignal): Promise<Loaded> {
  const base = `/cameras/${encodeURIComponent(id)}`;
  const optional = (p: Promise<unknown>) => p.catch((e) => {
    if (e instanceof ApiError && (e.status === 404 || e.status === 405)) return undefined;
    throw e;
  });
  const [roi, lines, zones, target] = await Promise.all([
    api.get<{ points: Pt[] }>(`${base}/roi`, signal),
    api.get<{ lines: { name: string; start: Pt; end: Pt }[] }>(`${base}/lines`, signal),
    optional(api.get(`${base}/zones`, signal)) as Promise<{ zones?: Zone[]; entry_zones?: Zone[] } | undefined>,
    optional(api.get(`${base}/engagement_target`, signal)) as Promise<Record<string, unknown> | undefined>,
  ]);
  const zone = (z: Zone) => ({ name: z.name, points: pts(z.points) });
  return {
    shapes: {
      roi: pts(roi.points),
      lines: lines.lines.map((l) => ({ name: l.name, start: pts([l.start])[0], end: pts([l.end])[0] })),
      zones: (zones?.zones ?? []).map(zone),
      entry: (zones?.entry_zones ?? []).map(zone),
      // A camera without its own target shows none here (the processor then uses the default).
      target: target && Array.isArray(target.points) ? pts(target.points) : [],
    },
    zonesApi: zones !== undefined,
    targetApi: target !== undefined && target.section !== null,
    targetNote: target === undefined ? "Not available on this server."
      : target.section === null ? "No engagement post-processor is configured."
      : target.enabled === false ? "The engagement post-processor is turned off." : "",
    targetDefault: target && Array.isArray(target.default_points) ? pts(target.default_points) : null,
  };
}

export function CameraDrawPage(props: PageProps) {
  const id = props.route[1];
  const cameraName = useCameraName(id);
  const { canEdit } = useSession();
  const base = `/cameras/${encodeURIComponent(id)}`;

  const [loaded, setLoaded] = useState<Loaded | null>(null);
  const [loadError, setLoadError] = useState<unknown>(null);
  const [shapes, setShapes] = useState<Shapes>({ roi: [], lines: [], zones: [], entry: [], target: [] });
  const [dirty, setDirty] = useState<Set<Group>>(new Set());
  const [tool, setTool] = useState<Tool>("select");
  const [draft, setDraft] = useState<Pt[]>([]);
  const [hover, setHover] = useState<Pt | null>(null);
  const [sel, setSelState] = useState<Sel | null>(null);
  /** The selected shape's selected corner (a polygon's point can be deleted on its own). */
  const [vertex, setVertex] = useState<number | null>(null);
  const setSel = (s: Sel | null) => { setSelState(s); setVertex(null); };
  const [errors, setErrors] = useState<Partial<Record<Group, unknown>>>({});
  const [saved, setSaved] = useState("");
  const [saving, setSaving] = useState(false);
  const [reloadKey, setReloadKey] = useState(0);
  const drag = useRef<Drag>(null);
  const press = useRef<{ x: number; y: number } | null>(null);

  const picture = useCameraPicture(
    canEdit ? [`${base}/image`, `${base}/calibration_image`, `${base}/snapshot`] : [`${base}/image`, `${base}/snapshot`],
    reloadKey,
  );

  useEffect(() => {
    const ctl = new AbortController();
    loadShapes(id, ctl.signal)
      .then((l) => { setLoaded(l); setShapes(l.shapes); setDirty(new Set()); setLoadError(null); })
      .catch((e) => { if (!ctl.signal.aborted) setLoadError(e); });
    return () => ctl.abort();
  }, [id]);

  // Closing or reloading the tab with unsaved shapes asks first.
  useEffect(() => {
    if (!dirty.size) return;
    const warn = (e: BeforeUnloadEvent) => { e.preventDefault(); e.returnValue = ""; };
    window.addEventListener("beforeunload", warn);
    return () => window.removeEventListener("beforeunload", warn);
  }, [dirty.size]);

  const editable = canEdit && loaded !== null;
  const change = (next: Shapes, group: Group) => {
    setShapes(next);
    setDirty((d) => new Set(d).add(group));
    setSaved("");
  };

  const chooseTool = (t: Tool) => {
    setTool(t);
    setDraft([]);
    setHover(null);
  };

  const finishPolygon = (points: Pt[]) => {
    if (points.length < 3) return;
    if (tool === "roi") {
      change({ ...shapes, roi: points }, "roi");
      setSel({ kind: "roi", index: 0 });
    } else if (tool === "zone" || tool === "entry") {
      const list = tool === "zone" ? shapes.zones : shapes.entry;
      const taken = [...shapes.zones, ...shapes.entry].map((z) => z.name);
      const z = { name: uniqueName(tool === "zone" ? "zone" : "entry", taken), points };
      change(tool === "zone" ? { ...shapes, zones: [...list, z] } : { ...shapes, entry: [...list, z] }, "zones");
      setSel({ kind: tool, index: list.length });
    }
    chooseTool("select");
  };

  const finishLine = (start: Pt, end: Pt) => {
    if (dist(start, end) < 2) return;
    const line = { name: uniqueName("line", shapes.lines.map((l) => l.name)), start, end };
    change({ ...shapes, lines: [...shapes.lines, line] }, "lines");
    setSel({ kind: "line", index: shapes.lines.length });
    chooseTool("select");
  };

  const selectShape = (s: Sel | null) => setSel(s);

  const isPolygon = (k: Kind) => k === "roi" || k === "zone" || k === "entry";
  const canDeleteVertex = !!sel && vertex !== null && isPolygon(sel.kind) && shapePoints(shapes, sel).length > 3;
  const deleteVertex = () => {
    if (!sel || vertex === null) return;
    change(withPoints(shapes, sel, shapePoints(shapes, sel).filter((_, i) => i !== vertex)), GROUP_OF[sel.kind]);
    setVertex(null);
  };
  /** A double click (or double tap) on a polygon adds a corner on its nearest edge. */
  const insertVertex = (s: Sel, p: Pt) => {
    const points = shapePoints(shapes, s);
    let best = 0;
    let bestD = Infinity;
    let bestQ: Pt = p;
    points.forEach((a, i) => {
      const b = points[(i + 1) % points.length];
      const vx = b[0] - a[0], vy = b[1] - a[1];
      const t = Math.max(0, Math.min(1, ((p[0] - a[0]) * vx + (p[1] - a[1]) * vy) / (vx * vx + vy * vy || 1)));
      const q: Pt = [Math.round(a[0] + t * vx), Math.round(a[1] + t * vy)];
      const d = dist(p, q);
      if (d < bestD) { bestD = d; best = i; bestQ = q; }
    });
    const next = [...points.slice(0, best + 1), bestQ, ...points.slice(best + 1)];
    change(withPoints(shapes, s, next), GROUP_OF[s.kind]);
    setSelState(s);
    setVertex(best + 1);
  };
  const lastDown = useRef<{ t: number; shape: string } | null>(null);

  const removeSelected = (s: Sel) => {
    change(without(shapes, s), GROUP_OF[s.kind]);
    setSel(null);
  };

  const onDown = (p: Pt, e: PointerEvent, unit: number) => {
    press.current = { x: e.clientX, y: e.clientY };
    const target = e.target as Element;
    const handle = target.getAttribute?.("data-handle");
    const shape = target.getAttribute?.("data-shape");
    if (tool === "select") {
      if (handle) {
        const [kind, index, vertex] = handle.split(":");
        const s = { kind: kind as Kind, index: Number(index) };
        setSel(s);
        drag.current = { type: "vertex", sel: s, vertex: Number(vertex) };
        setVertex(Number(vertex));
      } else if (shape) {
        const [kind, index] = shape.split(":");
        const s = { kind: kind as Kind, index: Number(index) };
        const now = e.timeStamp;
        if (isPolygon(s.kind) && lastDown.current?.shape === shape && now - lastDown.current.t < 400) {
          lastDown.current = null;
          insertVertex(s, p);
          return;
        }
        lastDown.current = { t: now, shape };
        setSel(s);
        drag.current = { type: "shape", sel: s, last: p };
      } else {
        setSel(null);
      }
      return;
    }
    if (tool === "line") {
      if (draft.length === 0) setDraft([p]);
      else finishLine(draft[0], p);
      return;
    }
    if (tool === "target") {
      if (draft.length === 0) {
        setDraft([p]);
        change({ ...shapes, target: [p] }, "target");
        setSel({ kind: "target", index: 0 });
      } else {
        change({ ...shapes, target: [draft[0], p] }, "target");
        setSel({ kind: "target", index: 0 });
        chooseTool("select");
      }
      return;
    }
    // Polygons: a click near the first point closes the shape.
    if (draft.length >= 3 && dist(p, draft[0]) <= 12 * unit) finishPolygon(draft);
    else setDraft([...draft, p]);
  };

  const onMove = (p: Pt) => {
    const d = drag.current;
    if (d) {
      const current = shapePoints(shapes, d.sel);
      if (d.type === "vertex") {
        const next = current.map((q, i) => (i === d.vertex ? p : q));
        change(withPoints(shapes, d.sel, next), GROUP_OF[d.sel.kind]);
      } else {
        const dx = p[0] - d.last[0];
        const dy = p[1] - d.last[1];
        if (dx || dy) {
          change(withPoints(shapes, d.sel, current.map((q) => [q[0] + dx, q[1] + dy] as Pt)), GROUP_OF[d.sel.kind]);
          drag.current = { ...d, last: p };
        }
      }
      return;
    }
    if (tool !== "select" && draft.length) setHover(p);
  };

  const onUp = (p: Pt, e: PointerEvent) => {
    drag.current = null;
    const from = press.current;
    press.current = null;
    // A line may also be drawn by dragging from its start to its end.
    if (tool === "line" && draft.length === 1 && from && Math.hypot(e.clientX - from.x, e.clientY - from.y) > 12) {
      finishLine(draft[0], p);
    }
  };

  const onKey = (e: KeyboardEvent) => {
    if (!editable) return;
    if (e.key === "Escape") { chooseTool("select"); return; }
    if (e.key === "Enter" && draft.length >= 3) { e.preventDefault(); finishPolygon(draft); return; }
    if (!sel) return;
    if (e.key === "Delete" || e.key === "Backspace") {
      e.preventDefault();
      if (canDeleteVertex) deleteVertex(); else removeSelected(sel);
      return;
    }
    const step = e.shiftKey ? 10 : 1;
    const moves: Record<string, Pt> = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
    const m = moves[e.key];
    if (m) {
      e.preventDefault();
      const current = shapePoints(shapes, sel);
      change(withPoints(shapes, sel, current.map((q) => [q[0] + m[0], q[1] + m[1]] as Pt)), GROUP_OF[sel.kind]);
    }
  };

  const rename = (kind: "line" | "zone" | "entry", index: number, name: string) => {
    if (kind === "line") change({ ...shapes, lines: shapes.lines.map((l, i) => (i === index ? { ...l, name } : l)) }, "lines");
    else if (kind === "zone") change({ ...shapes, zones: shapes.zones.map((z, i) => (i === index ? { ...z, name } : z)) }, "zones");
    else change({ ...shapes, entry: shapes.entry.map((z, i) => (i === index ? { ...z, name } : z)) }, "zones");
  };

  const swap = (index: number) => change({
    ...shapes, lines: shapes.lines.map((l, i) => (i === index ? { ...l, start: l.end, end: l.start } : l)),
  }, "lines");

  const save = async () => {
    setSaving(true);
    setSaved("");
    const errs: Partial<Record<Group, unknown>> = {};
    const done: Group[] = [];
    const writes: Record<Group, () => Promise<unknown>> = {
      roi: () => (shapes.roi.length ? api.put(`${base}/roi`, { points: shapes.roi }) : api.del(`${base}/roi`)),
      lines: () => api.put(`${base}/lines`, { lines: shapes.lines }),
      zones: () => api.put(`${base}/zones`, {
        zones: shapes.zones.map((z) => ({ name: z.name, points: z.points })),
        entry_zones: shapes.entry.map((z) => ({ name: z.name, points: z.points })),
      }),
      // null removes the camera's own target (the processor-wide default then applies).
      target: () => api.put(`${base}/engagement_target`, { points: shapes.target.length ? shapes.target : null }),
    };
    for (const g of ["roi", "lines", "zones", "target"] as Group[]) {
      if (!dirty.has(g)) continue;
      try {
        await writes[g]();
        done.push(g);
      } catch (e) {
        errs[g] = readable(e);
      }
    }
    setErrors(errs);
    setDirty((d) => { const n = new Set(d); for (const g of done) n.delete(g); return n; });
    // What was saved is what "Discard changes" goes back to from now on.
    if (loaded && done.length) {
      const kept = { ...loaded.shapes };
      const keys: Record<Group, (keyof Shapes)[]> = { roi: ["roi"], lines: ["lines"], zones: ["zones", "entry"], target: ["target"] };
      for (const g of done) for (const k of keys[g]) (kept as Record<keyof Shapes, unknown>)[k] = shapes[k];
      setLoaded({ ...loaded, shapes: kept });
    }
    if (done.length) {
      const names: Record<Group, string> = { roi: "region of interest", lines: "counting lines", zones: "zones", target: "engagement target" };
      setSaved(`Saved: ${done.map((g) => names[g]).join(", ")}.`);
    }
    setSaving(false);
  };

  const revert = () => {
    if (!loaded) return;
    setShapes(loaded.shapes);
    setDirty(new Set());
    setErrors({});
    setSel(null);
    chooseTool("select");
  };

  if (loadError) {
    return (
      <section class="draw-page">
        <PageHeader title={`Draw on camera ${cameraName}`} />
        <ErrorMessage error={loadError} />
      </section>
    );
  }

  const tools: { tool: Tool; label: string; disabled?: boolean }[] = [
    { tool: "select", label: "Select / move" },
    { tool: "roi", label: "Draw region of interest" },
    { tool: "line", label: "Draw counting line" },
    { tool: "zone", label: "Draw zone", disabled: !loaded?.zonesApi },
    { tool: "entry", label: "Draw entry zone", disabled: !loaded?.zonesApi },
    { tool: "target", label: "Place engagement target", disabled: !loaded?.targetApi },
  ];

  const renderShapes = (unit: number) => {
    const r = 7 * unit;
    const out = [];
    // The selected shape's handles are drawn last, above every other shape, so they can be grabbed.
    let selectedHandles: preact.ComponentChildren = null;
    const handles = (s: Sel, points: Pt[]) => {
      if (editable && same(sel, s)) {
        selectedHandles = points.map((p, i) => (
          <circle key={`h${i}`} class={`handle${i === 0 && s.kind !== "line" && s.kind !== "target" ? " first" : ""}${i === vertex ? " active" : ""}`}
                  cx={p[0]} cy={p[1]} r={i === vertex ? r * 1.3 : r} data-handle={`${s.kind}:${s.index}:${i}`} />
        ));
      }
      return null;
    };
    const polygon = (kind: "roi" | "zone" | "entry", index: number, name: string, points: Pt[]) => {
      const s = { kind, index };
      if (points.length < 3) return null;
      // Zones are named at their centre; the ROI at its first corner, so the two never overlap.
      const cx = kind === "roi" ? points[0][0] + 10 * unit : points.reduce((a, p) => a + p[0], 0) / points.length;
      const cy = kind === "roi" ? points[0][1] + 20 * unit : points.reduce((a, p) => a + p[1], 0) / points.length;
      return (
        <g key={`${kind}${index}`}>
          <polygon class={`shape ${kind}${same(sel, s) ? " selected" : ""}`} points={pointsAttr(points)}
                   data-shape={`${kind}:${index}`} />
          <SvgLabel x={cx} y={cy} unit={unit}>{name}</SvgLabel>
          {handles(s, points)}
        </g>
      );
    };
    out.push(polygon("roi", 0, "ROI", shapes.roi));
    shapes.zones.forEach((z, i) => out.push(polygon("zone", i, z.name, z.points)));
    shapes.entry.forEach((z, i) => out.push(polygon("entry", i, z.name, z.points)));
    shapes.lines.forEach((l, i) => {
      const s = { kind: "line" as Kind, index: i };
      const [ax, ay] = l.start;
      const [bx, by] = l.end;
      const len = Math.hypot(bx - ax, by - ay) || 1;
      // 'in' is a crossing from the left to the right of someone walking start -> end (y down):
      // the right-hand normal is (-dy, dx).
      const nx = -(by - ay) / len;
      const ny = (bx - ax) / len;
      const mx = (ax + bx) / 2;
      const my = (ay + by) / 2;
      const L = 38 * unit;
      const hx = mx + nx * L;
      const hy = my + ny * L;
      const tx = mx - nx * L;
      const ty = my - ny * L;
      const head = 14 * unit;
      const ux = nx, uy = ny;
      const headPts: Pt[] = [
        [hx + ux * head, hy + uy * head],
        [hx - uy * head * 0.7, hy + ux * head * 0.7],
        [hx + uy * head * 0.7, hy - ux * head * 0.7],
      ];
      out.push(
        <g key={`line${i}`}>
          <line class="hit" x1={ax} y1={ay} x2={bx} y2={by} data-shape={`line:${i}`} />
          <line class={`shape line${same(sel, s) ? " selected" : ""}`} x1={ax} y1={ay} x2={bx} y2={by}
                data-shape={`line:${i}`} />
          <line class="arrow" x1={tx} y1={ty} x2={hx} y2={hy} />
          <polygon class="arrow-head" points={pointsAttr(headPts)} />
          <SvgLabel x={hx + nx * 22 * unit - 8 * unit} y={hy + ny * 22 * unit + 5 * unit} unit={unit}>in</SvgLabel>
          <SvgLabel x={tx - nx * 14 * unit - 12 * unit} y={ty - ny * 14 * unit + 5 * unit} unit={unit}>out</SvgLabel>
          <SvgLabel x={ax + (bx - ax) * 0.25 - nx * 12 * unit} y={ay + (by - ay) * 0.25 - ny * 12 * unit} unit={unit}>{l.name}</SvgLabel>
          <circle class="line-start" cx={ax} cy={ay} r={4 * unit} />
          {handles(s, [l.start, l.end])}
        </g>,
      );
    });
    if (shapes.target.length) {
      const s = { kind: "target" as Kind, index: 0 };
      const t = shapes.target;
      out.push(
        <g key="target">
          {t.length === 2 ? (
            <>
              <line class="hit" x1={t[0][0]} y1={t[0][1]} x2={t[1][0]} y2={t[1][1]} data-shape="target:0" />
              <line class={`shape target${same(sel, s) ? " selected" : ""}`} x1={t[0][0]} y1={t[0][1]}
                    x2={t[1][0]} y2={t[1][1]} data-shape="target:0" />
            </>
          ) : (
            <circle class={`shape target${same(sel, s) ? " selected" : ""}`} cx={t[0][0]} cy={t[0][1]}
                    r={9 * unit} data-shape="target:0" />
          )}
          <SvgLabel x={t[0][0] + 12 * unit} y={t[0][1] - 12 * unit} unit={unit}>target</SvgLabel>
          {handles(s, t)}
        </g>,
      );
    }
    // The processor-wide target, which applies while the camera has none of its own.
    const ghost = loaded?.targetApi && !shapes.target.length ? loaded.targetDefault : null;
    if (ghost && ghost.length) {
      out.push(
        <g key="default-target" style={{ pointerEvents: "none" }}>
          {ghost.length === 2
            ? <line class="shape target draft" x1={ghost[0][0]} y1={ghost[0][1]} x2={ghost[1][0]} y2={ghost[1][1]} />
            : <circle class="shape target draft" cx={ghost[0][0]} cy={ghost[0][1]} r={9 * unit} style={{ fillOpacity: 0.3 }} />}
          <SvgLabel x={ghost[0][0] + 12 * unit} y={ghost[0][1] - 12 * unit} unit={unit}>default target</SvgLabel>
        </g>,
      );
    }
    if (selectedHandles) out.push(<g key="handles">{selectedHandles}</g>);
    // The shape being drawn.
    if (draft.length && tool !== "select") {
      const kindClass = tool === "line" ? "line" : tool;
      const line = hover ? [...draft, hover] : draft;
      out.push(
        <g key="draft" style={{ pointerEvents: "none" }}>
          <polyline class={`shape ${kindClass} draft`} points={pointsAttr(line)} style={{ fill: "none" }} />
          {draft.map((p, i) => (
            <circle key={i} class={`handle${i === 0 ? " first" : ""}`} cx={p[0]} cy={p[1]} r={r} />
          ))}
        </g>,
      );
    }
    return out;
  };

  const hintId = "draw-hint";
  const dirtyNote = dirty.size ? "Unsaved changes." : "";

  const item = (kind: Kind, index: number, title: string, extra?: preact.ComponentChildren,
                nameInput?: { value: string; onInput: (v: string) => void }) => {
    const s = { kind, index };
    const label = `${KIND_NAME[kind].toLowerCase()}${nameInput ? ` ${nameInput.value || index + 1}` : ""}`;
    return (
      <li key={`${kind}${index}`} class={same(sel, s) ? "selected" : ""}>
        <div class="row">
          <span class={`swatch ${kind}`} aria-hidden="true" />
          {nameInput ? (
            <input type="text" value={nameInput.value} aria-label={`Name of ${KIND_NAME[kind].toLowerCase()} ${index + 1}`}
                   aria-invalid={!NAME_RE.test(nameInput.value)} disabled={!editable} maxLength={64}
                   onInput={(e) => nameInput.onInput(e.currentTarget.value)} />
          ) : <span>{title}</span>}
        </div>
        <div class="row" style={{ marginTop: ".35rem" }}>
          <button type="button" class="btn plain" aria-pressed={same(sel, s)} onClick={() => selectShape(same(sel, s) ? null : s)}
                  aria-label={`Select ${label}`}>Select</button>
          {extra}
          <button type="button" class="btn danger" disabled={!editable} aria-label={`Delete ${label}`}
                  onClick={() => removeSelected(s)}>Delete</button>
        </div>
        {nameInput && !NAME_RE.test(nameInput.value) ? (
          <small class="error">Names are 1-64 letters, digits, '-' or '_', starting with a letter or digit.</small>
        ) : null}
      </li>
    );
  };

  return (
    <section class="draw-page">
      <PageHeader title={`Draw on camera ${cameraName}`} />
      {!canEdit ? <ReadOnlyNote /> : null}
      {!loaded ? <Loading what="shapes" /> : null}
      <div class="draw-layout">
        <div>
          <div class="toolbar" role="toolbar" aria-label="Drawing tools">
            {tools.map((t) => (
              <button key={t.tool} type="button" class="btn plain" aria-pressed={tool === t.tool}
                      disabled={!editable || t.disabled} onClick={() => chooseTool(t.tool)}>{t.label}</button>
            ))}
            {draft.length >= 3 && tool !== "line" && tool !== "target" ? (
              <button type="button" class="btn primary" onClick={() => finishPolygon(draft)}>Finish shape</button>
            ) : null}
            {draft.length === 1 && tool === "target" ? (
              <button type="button" class="btn primary" onClick={() => chooseTool("select")}>Done (point target)</button>
            ) : null}
            {draft.length > 0 ? (
              <button type="button" class="btn plain" onClick={() => chooseTool("select")}>Cancel shape</button>
            ) : null}
            {tool === "select" && canDeleteVertex ? (
              <button type="button" class="btn danger" onClick={deleteVertex}>Delete point {vertex! + 1}</button>
            ) : null}
          </div>
          <p id={hintId} class="tool-hint" aria-live="polite">{editable ? TOOL_HINT[tool] : "Shapes as the processor uses them."}</p>
          <CanvasStage picture={picture} label={`Picture of camera ${id} with its shapes`} describedBy={hintId}
                       editable={editable}
                       onPointerDown={(p, e) => onDown(p, e, currentUnit(e))}
                       onPointerMove={onMove} onPointerUp={onUp} onKeyDown={onKey}>
            {(unit) => renderShapes(unit)}
          </CanvasStage>
          <div class="save-bar">
            <button type="button" class="btn plain" onClick={() => setReloadKey((k) => k + 1)}>Reload picture</button>
            {picture.failed ? <span class="error" role="alert">No picture from this camera; shapes are drawn on a blank area.</span> : null}
          </div>
        </div>
        <aside class="side-panel card" aria-labelledby="shapes-heading">
          <h2 id="shapes-heading">Shapes</h2>
          <h3>Region of interest</h3>
          <ul class="shape-list">
            {shapes.roi.length >= 3 ? item("roi", 0, `${shapes.roi.length} points`) : <li class="muted">Whole picture (none drawn).</li>}
          </ul>
          <ErrorMessage error={errors.roi} />
          <h3>Counting lines</h3>
          <ul class="shape-list">
            {shapes.lines.length ? shapes.lines.map((l, i) => item("line", i, l.name, (
              <button type="button" class="btn plain" disabled={!editable} aria-label={`Swap direction of ${l.name}`}
                      onClick={() => swap(i)}>Swap direction</button>
            ), { value: l.name, onInput: (v) => rename("line", i, v) })) : <li class="muted">None.</li>}
          </ul>
          <ErrorMessage error={errors.lines} />
          <h3>Zones</h3>
          <ul class="shape-list">
            {!loaded?.zonesApi ? <li class="muted">Not available on this server.</li>
              : shapes.zones.length ? shapes.zones.map((z, i) => item("zone", i, z.name, undefined,
                { value: z.name, onInput: (v) => rename("zone", i, v) })) : <li class="muted">None.</li>}
          </ul>
          <h3>Entry zones</h3>
          <ul class="shape-list">
            {!loaded?.zonesApi ? <li class="muted">Not available on this server.</li>
              : shapes.entry.length ? shapes.entry.map((z, i) => item("entry", i, z.name, undefined,
                { value: z.name, onInput: (v) => rename("entry", i, v) })) : <li class="muted">None.</li>}
          </ul>
          <ErrorMessage error={errors.zones} />
          <h3>Engagement target</h3>
          <ul class="shape-list">
            {!loaded?.targetApi ? <li class="muted">{loaded?.targetNote || "Not available on this server."}</li>
              : shapes.target.length ? item("target", 0, shapes.target.length === 2 ? "Segment" : "Point")
              : <li class="muted">None for this camera: {loaded.targetDefault
                ? "the processor-wide target (dashed) applies." : "the bottom edge of the picture applies."}</li>}
          </ul>
          <ErrorMessage error={errors.target} />
          <div class="save-bar">
            <button type="button" class="btn primary" disabled={!editable || saving || dirty.size === 0}
                    aria-busy={saving} onClick={save}>Save</button>
            <button type="button" class="btn plain" disabled={!editable || saving || dirty.size === 0}
                    onClick={revert}>Discard changes</button>
            {dirtyNote ? <span class="muted">{dirtyNote}</span> : null}
          </div>
          {saved ? <Notice>{saved}</Notice> : null}
        </aside>
      </div>
    </section>
  );
}

/** Image pixels per screen pixel under a pointer event (the stage's svg is its current target). */
function currentUnit(e: PointerEvent): number {
  const svg = (e.currentTarget as Element | null)?.closest?.("svg") as SVGSVGElement | null;
  if (!svg) return 1;
  const w = svg.getBoundingClientRect().width;
  return w > 0 ? svg.viewBox.baseVal.width / w : 1;
}

/** "lines.2.name: ..." from the server reads as "Counting line 3, name: ...". */
function readable(e: unknown): unknown {
  if (!(e instanceof ApiError)) return e;
  const names: Record<string, string> = { lines: "Counting line", zones: "Zone", entry_zones: "Entry zone", points: "Point" };
  const detail = e.detail.replace(/\b(lines|zones|entry_zones|points)\.(\d+)\.?/g,
    (_m, k: string, n: string) => `${names[k]} ${Number(n) + 1}, `);
  return new ApiError(e.status, detail, e.body);
}
