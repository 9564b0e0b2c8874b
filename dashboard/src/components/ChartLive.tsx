// Live numbers for the charts page: one live-stream connection for the chosen camera or area,
// shared by the tiles (people now, in/out per line since the page opened) and by the charts
// that add live records to today's bars.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";

import { type LiveRecord, type LiveState, openLive } from "../live";
import { localParts } from "./ChartTime";

export interface Selection {
  type: "camera" | "area";
  id: string;
}

export interface LiveFeed {
  subscribe(fn: (record: LiveRecord) => void): () => void;
}

const CAMERA_KINDS = ["frame_summary", "line_crossing"];
const AREA_KINDS = ["occupancy_log"];

/** One stream per selection; closed when the selection changes or the page goes. */
export function useLiveFeed(selection: Selection | null): { feed: LiveFeed; state: LiveState; detail?: string } {
  const listeners = useRef(new Set<(r: LiveRecord) => void>());
  const [state, setState] = useState<{ state: LiveState; detail?: string }>({ state: "connecting" });
  const key = selection ? `${selection.type}:${selection.id}` : "";

  useEffect(() => {
    if (!selection) return;
    const conn = openLive({
      cameras: selection.type === "camera" ? [selection.id] : undefined,
      areas: selection.type === "area" ? [selection.id] : undefined,
      kinds: selection.type === "camera" ? CAMERA_KINDS : AREA_KINDS,
      onRecord: (r) => { for (const fn of listeners.current) fn(r); },
      onState: (s, detail) => setState({ state: s, detail }),
    });
    return () => conn.close();
  }, [key]);

  const feed = useMemo<LiveFeed>(() => ({
    subscribe(fn) {
      listeners.current.add(fn);
      return () => { listeners.current.delete(fn); };
    },
  }), []);
  return { feed, ...state };
}

interface Numbers {
  peopleNow: number | null;
  occupancy: number | null;
  threshold: number | null;
  lines: Record<string, { in: number; out: number }>;
  last: string | null;
}

const STATE_TEXT: Record<LiveState, string> = {
  connecting: "Connecting…",
  open: "Live",
  reconnecting: "Reconnecting…",
  stopped: "Stopped",
};

function Tile(props: { id: string; label: string; value: string | number; hint?: string; tone?: string }) {
  const labelId = `live-${props.id}`;
  return (
    <div class={`tile${props.tone ? ` ${props.tone}` : ""}`}>
      <span id={labelId} class="tile-label">{props.label}</span>
      {/* aria-live off: the numbers change many times a second; the name stays stable. */}
      <output class="tile-value" aria-labelledby={labelId} aria-live="off">{props.value}</output>
      {props.hint ? <span class="tile-hint">{props.hint}</span> : null}
    </div>
  );
}

/** The live tiles. `lines`: the camera's counting lines, shown at 0 before anyone crosses. */
export function LiveTiles(props: {
  selection: Selection;
  feed: LiveFeed;
  state: LiveState;
  detail?: string;
  lines: string[];
  timeZone: string;
}) {
  const fresh = (): Numbers => ({
    peopleNow: null, occupancy: null, threshold: null, last: null,
    lines: Object.fromEntries(props.lines.map((l) => [l, { in: 0, out: 0 }])),
  });
  const numbers = useRef<Numbers>(fresh());
  const dirty = useRef(false);
  const [shown, setShown] = useState<Numbers>(numbers.current);
  const key = `${props.selection.type}:${props.selection.id}`;

  useEffect(() => {
    numbers.current = fresh();
    setShown({ ...numbers.current });
    const off = props.feed.subscribe((r) => {
      const n = numbers.current;
      if (r.source_id !== props.selection.id) return;
      if (r.kind === "frame_summary") {
        n.peopleNow = typeof r.detected_objects === "number" ? r.detected_objects : n.peopleNow;
        n.occupancy = typeof r.occupancy === "number" ? r.occupancy : n.occupancy;
        n.threshold = typeof r.occupancy_threshold === "number" ? r.occupancy_threshold : n.threshold;
      } else if (r.kind === "occupancy_log") {
        n.peopleNow = typeof r.occupancy === "number" ? r.occupancy : n.peopleNow;
        n.threshold = typeof r.threshold === "number" ? r.threshold : n.threshold;
      } else if (r.kind === "line_crossing" && typeof r.line === "string") {
        const c = n.lines[r.line] ?? (n.lines[r.line] = { in: 0, out: 0 });
        if (r.direction === "in") c.in += 1;
        else if (r.direction === "out") c.out += 1;
      } else {
        return;
      }
      n.last = r.timestamp;
      dirty.current = true;
    });
    // Many records a second: repaint at most four times a second.
    const t = window.setInterval(() => {
      if (!dirty.current) return;
      dirty.current = false;
      const n = numbers.current;
      setShown({ ...n, lines: Object.fromEntries(Object.entries(n.lines).map(([k, v]) => [k, { ...v }])) });
    }, 250);
    return () => { off(); window.clearInterval(t); };
  }, [key, props.lines.join("\u0000")]);

  const lastText = shown.last ? (() => {
    const t = new Date(shown.last);
    if (Number.isNaN(t.getTime())) return shown.last;
    const p = localParts(t, props.timeZone);
    return `${p.date} ${String(p.hour).padStart(2, "0")}:${String(p.minute).padStart(2, "0")}`;
  })() : "nothing yet";
  const counted = shown.occupancy ?? shown.peopleNow; // the figure the limit applies to
  const over = shown.threshold && counted !== null && counted > shown.threshold;
  const lineNames = Object.keys(shown.lines).sort();

  return (
    <section class="live card" aria-labelledby="live-heading">
      <div class="live-head">
        <h2 id="live-heading">Live numbers</h2>
        <span class={`live-state ${props.state}`} role="status">
          {STATE_TEXT[props.state]}{props.state !== "open" && props.detail ? ` (${props.detail})` : ""}
        </span>
      </div>
      <div class="tiles">
        <Tile id="people" label="People now" value={shown.peopleNow ?? "–"}
              hint={shown.threshold ? `limit ${shown.threshold}` : undefined} tone={over ? "over" : undefined} />
        {props.selection.type === "camera"
          ? lineNames.flatMap((line, i) => [
            <Tile key={`${line}-in`} id={`line-${i}-in`} label={`${line} in`} value={shown.lines[line].in}
                  hint="since this page opened" />,
            <Tile key={`${line}-out`} id={`line-${i}-out`} label={`${line} out`} value={shown.lines[line].out}
                  hint="since this page opened" />,
          ])
          : null}
        <Tile id="last" label="Latest record" value={lastText} hint={`time zone ${props.timeZone}`} />
      </div>
      {props.selection.type === "camera" && lineNames.length === 0 ? (
        <p class="hint">This camera has no counting lines: draw one on the camera's page to count people in and out.</p>
      ) : null}
    </section>
  );
}
