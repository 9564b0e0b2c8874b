// The one way the dashboard talks to the processor: same-origin fetch with the session cookie,
// the CSRF header on writes, JSON in and out, errors as ApiError.

export class ApiError extends Error {
  constructor(public status: number, public detail: string, public body?: unknown) {
    super(detail);
  }
}

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

export function cookie(name: string): string | undefined {
  for (const part of document.cookie.split(";")) {
    const [k, ...v] = part.trim().split("=");
    if (k === name) return decodeURIComponent(v.join("="));
  }
  return undefined;
}

/** Called on any 401 from the API (the session ended): the app shows the sign-in page. */
let onUnauthorized: () => void = () => {};
export function setUnauthorizedHandler(fn: () => void): void {
  onUnauthorized = fn;
}

function detailOf(body: unknown, fallback: string): string {
  if (body && typeof body === "object" && "detail" in body) {
    const d = (body as { detail: unknown }).detail;
    if (typeof d === "string") return d;
    if (Array.isArray(d)) {
      return d
        .map((e) => {
          if (!e || typeof e !== "object" || !("msg" in e)) return String(e);
          // FastAPI's {loc, msg} or the config checks' {section, key, msg, expected}
          const p = e as { loc?: unknown[]; key?: string | null; msg: string; expected?: string | null };
          const where = p.key ?? p.loc?.slice(1).join(".") ?? "";
          const expected = p.expected ? ` (expected ${p.expected})` : "";
          return `${where ? `${where}: ` : ""}${p.msg}${expected}`;
        })
        .join("; ");
    }
    return JSON.stringify(d);
  }
  return fallback;
}

export async function request<T = unknown>(method: string, path: string, body?: unknown,
                                           opts: { raw?: boolean; signal?: AbortSignal } = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (UNSAFE.has(method)) {
    const csrf = cookie("lookout_csrf");
    if (csrf) headers["X-CSRF-Token"] = csrf;
  }
  let payload: BodyInit | undefined;
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const res = await fetch(path, { method, headers, body: payload, credentials: "same-origin",
                                  signal: opts.signal });
  if (opts.raw) {
    if (!res.ok) throw new ApiError(res.status, res.statusText);
    return res as unknown as T;
  }
  const text = await res.text();
  let parsed: unknown = undefined;
  if (text) {
    try { parsed = JSON.parse(text); } catch { parsed = text; }
  }
  if (!res.ok) {
    if (res.status === 401 && path !== "/auth/session") onUnauthorized();
    throw new ApiError(res.status, detailOf(parsed, `${res.status} ${res.statusText}`), parsed);
  }
  return parsed as T;
}

export const api = {
  get: <T = unknown>(path: string, signal?: AbortSignal) => request<T>("GET", path, undefined, { signal }),
  post: <T = unknown>(path: string, body?: unknown) => request<T>("POST", path, body),
  put: <T = unknown>(path: string, body?: unknown) => request<T>("PUT", path, body),
  del: <T = unknown>(path: string) => request<T>("DELETE", path),
};

/** Query string from an object, skipping empty values. */
export function query(params: Record<string, string | number | undefined | null>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}
