// Small building blocks every page uses, so they look and behave the same.
import type { ComponentChildren, JSX } from "preact";
import { useCallback, useEffect, useId, useRef, useState } from "preact/hooks";

import { ApiError } from "../api";

export function PageHeader(props: { title: string; children?: ComponentChildren }) {
  useEffect(() => {
    document.title = `${props.title} · Lookout`;
  }, [props.title]);
  return (
    <div class="page-header">
      <h1>{props.title}</h1>
      {props.children ? <div class="actions">{props.children}</div> : null}
    </div>
  );
}

/** A labelled input; every control on a page goes through this or has an aria-label. */
export function Field(props: {
  label: string;
  hint?: string;
  children: (id: string, describedBy?: string) => JSX.Element;
}) {
  const id = useId();
  const hintId = props.hint ? `${id}-hint` : undefined;
  return (
    <div class="field">
      <label for={id}>{props.label}</label>
      {props.children(id, hintId)}
      {props.hint ? <small id={hintId} class="hint">{props.hint}</small> : null}
    </div>
  );
}

export function ErrorMessage(props: { error: unknown }) {
  if (!props.error) return null;
  const e = props.error;
  const text = e instanceof ApiError ? e.detail : e instanceof Error ? e.message : String(e);
  return <p class="error" role="alert">{text}</p>;
}

export function Notice(props: { children: ComponentChildren }) {
  return <p class="notice" role="status">{props.children}</p>;
}

export function Loading(props: { what?: string }) {
  return <p class="loading" role="status" aria-live="polite">Loading{props.what ? ` ${props.what}` : ""}…</p>;
}

export interface Async<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  reload: () => void;
}

/** Loads data once and again whenever `deps` change or `reload()` is called. */
export function useAsync<T>(load: (signal: AbortSignal) => Promise<T>, deps: unknown[] = []): Async<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);
  const [loading, setLoading] = useState(true);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    const ctl = new AbortController();
    setLoading(true);
    load(ctl.signal)
      .then((d) => { if (!ctl.signal.aborted) { setData(d); setError(undefined); } })
      .catch((e) => { if (!ctl.signal.aborted && !(e instanceof DOMException)) setError(e); })
      .finally(() => { if (!ctl.signal.aborted) setLoading(false); });
    return () => ctl.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { data, error, loading, reload };
}

/** Runs `fn` every `ms` while the page is visible. */
export function useInterval(fn: () => void, ms: number) {
  const saved = useRef(fn);
  saved.current = fn;
  useEffect(() => {
    const t = window.setInterval(() => { if (!document.hidden) saved.current(); }, ms);
    return () => window.clearInterval(t);
  }, [ms]);
}

/** A button that runs an async action, shows it is busy and reports its error. */
export function ActionButton(props: {
  onClick: () => Promise<unknown> | unknown;
  children: ComponentChildren;
  disabled?: boolean;
  kind?: "primary" | "danger" | "plain";
  confirm?: string;
  label?: string;
  /** The id of a visible text saying why the button is disabled (or what it does). */
  describedBy?: string;
  onError?: (e: unknown) => void;
}) {
  const [busy, setBusy] = useState(false);
  const click = async () => {
    if (props.confirm && !window.confirm(props.confirm)) return;
    setBusy(true);
    try {
      await props.onClick();
    } catch (e) {
      props.onError?.(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <button type="button" class={`btn ${props.kind ?? "plain"}`} disabled={props.disabled || busy}
            aria-busy={busy} aria-label={props.label} aria-describedby={props.describedBy}
            onClick={click}>
      {props.children}
    </button>
  );
}

/** Viewers see this where admins get change controls. */
export function ReadOnlyNote() {
  return <p class="readonly-note">You are signed in as a viewer: changes need an admin.</p>;
}
