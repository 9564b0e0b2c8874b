// The live stream client: records as the processor makes them (docs/events.md), over
// Server-Sent Events. A browser's EventSource cannot send headers, so each connection first
// gets a single-use ticket (POST /live/ticket, with the session cookie and the CSRF header)
// and opens GET /live/events?ticket=...; a ticket is spent by the connection, so every
// reconnection (the server ended the stream, the network dropped) gets a new one, after a
// backoff that grows while connecting fails and starts again once records flow.
import { ApiError, api, query } from "./api";

/** Every record has this envelope (docs/events.md); the rest depends on `kind`. */
export interface LiveRecord {
  schema: number;
  kind: string;
  id: string;
  source: "camera" | "area";
  source_id: string;
  timestamp: string;
  [field: string]: unknown;
}

export type LiveState = "connecting" | "open" | "reconnecting" | "stopped";

export interface LiveOptions {
  /** Only the records of these cameras / areas (ids); both absent: every record. */
  cameras?: string[];
  areas?: string[];
  /** Record kinds wanted (the server refuses an unknown one). */
  kinds: string[];
  onRecord: (record: LiveRecord) => void;
  onState?: (state: LiveState, detail?: string) => void;
}

export interface LiveConnection {
  close(): void;
}

const FIRST_DELAY_MS = 1000;
const MAX_DELAY_MS = 30_000;

/** The wait before reconnection attempt `attempt` (0-based): doubling, capped, with jitter so
 * many pages reconnecting after a restart do not arrive together. */
export function backoffDelay(attempt: number, random: () => number = Math.random): number {
  const base = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** Math.min(attempt, 10));
  return Math.round(base * (0.75 + 0.5 * random()));
}

/** Opens the stream and keeps it open until `close()`. */
export function openLive(options: LiveOptions): LiveConnection {
  let source: EventSource | null = null;
  let timer: number | undefined;
  let attempt = 0;
  let closed = false;
  const state = (s: LiveState, detail?: string) => { if (!closed || s === "stopped") options.onState?.(s, detail); };

  const deliver = (e: MessageEvent) => {
    attempt = 0; // records flow: the next failure starts the backoff again
    let record: LiveRecord;
    try {
      record = JSON.parse(String(e.data)) as LiveRecord;
    } catch {
      return;
    }
    options.onRecord(record);
  };

  const retry = (detail: string, delayMs?: number) => {
    if (source) {
      source.close();
      source = null;
    }
    if (closed) return;
    const wait = delayMs ?? backoffDelay(attempt);
    attempt += 1;
    state("reconnecting", detail);
    timer = window.setTimeout(connect, wait);
  };

  async function connect() {
    timer = undefined;
    if (closed) return;
    state(attempt === 0 ? "connecting" : "reconnecting");
    let ticket: string;
    try {
      ticket = (await api.post<{ ticket: string }>("/live/ticket")).ticket;
    } catch (e) {
      if (e instanceof ApiError && (e.status === 401 || e.status === 403)) {
        // Signed out (the app shows the sign-in page) or not allowed: retrying cannot help.
        closed = true;
        state("stopped", e.detail);
        return;
      }
      const after = e instanceof ApiError && e.status === 503 ? 5000 : undefined;
      retry(e instanceof Error ? e.message : String(e), after);
      return;
    }
    if (closed) return;
    const url = "/live/events" + query({
      camera: options.cameras?.join(","),
      area: options.areas?.join(","),
      kind: options.kinds.join(","),
      ticket,
    });
    const es = new EventSource(url, { withCredentials: false });
    source = es;
    es.onopen = () => state("open");
    for (const kind of options.kinds) es.addEventListener(kind, deliver as EventListener);
    es.addEventListener("stream_end", (e) => {
      let reason = "the server ended the stream";
      try {
        reason = String((JSON.parse(String((e as MessageEvent).data)) as { reason?: string }).reason ?? reason);
      } catch { /* keep the default */ }
      retry(reason);
    });
    // EventSource would reconnect by itself with the same (spent) ticket: take over instead.
    es.onerror = () => retry("connection lost");
  }

  void connect();
  return {
    close() {
      closed = true;
      if (timer !== undefined) window.clearTimeout(timer);
      source?.close();
      source = null;
      state("stopped");
    },
  };
}
