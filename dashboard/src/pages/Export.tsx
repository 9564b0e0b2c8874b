// #/export: choose cameras, areas, dates and data types; POST /export and save the zip.
import "./manage.css";

import { useEffect, useRef, useState } from "preact/hooks";

import { api, ApiError, cookie } from "../api";
import { ErrorMessage, Field, Loading, PageHeader, useAsync } from "../components/ui";
import type { PageProps } from ".";

interface Named { id: string; name: string }
interface SectionOut { section: string | null; values: Record<string, string> }

const DATA_TYPES: { key: string; label: string; hint: string }[] = [
  { key: "raw", label: "Raw logs", hint: "People per sample, per camera and area (CSV)." },
  { key: "events", label: "Events", hint: "Line crossings (CSV)." },
  { key: "reports", label: "Reports", hint: "Hourly, daily, weekly and live summaries (CSV)." },
  { key: "screenshots", label: "Screenshots", hint: "JPEG pictures; can be large." },
];

function isoDate(d: Date): string {
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

function sizeText(bytes: number): string {
  if (bytes < 1024) return `${bytes} bytes`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

interface Saved { url: string; name: string; size: number; members: number | null }

export function ExportPage(_props: PageProps) {
  const lists = useAsync(async (signal) => {
    const [cameras, areas, app] = await Promise.all([
      api.get<Named[]>("/cameras", signal),
      api.get<Named[]>("/areas", signal),
      api.get<SectionOut>("/app", signal).catch(() => null),
    ]);
    return { cameras, areas, timeZone: app?.values?.TimeZone ?? "" };
  });
  const today = new Date();
  const weekAgo = new Date(today.getTime() - 6 * 86400 * 1000);
  const [cams, setCams] = useState<Set<string> | null>(null);
  const [areas, setAreas] = useState<Set<string> | null>(null);
  const [from, setFrom] = useState(isoDate(weekAgo));
  const [to, setTo] = useState(isoDate(today));
  const [types, setTypes] = useState(new Set(["raw", "events", "reports"]));
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(undefined);
  const [saved, setSaved] = useState<Saved | null>(null);
  const linkRef = useRef<HTMLAnchorElement>(null);

  useEffect(() => {
    if (lists.data && cams === null) {
      setCams(new Set(lists.data.cameras.map((c) => c.id)));
      setAreas(new Set(lists.data.areas.map((a) => a.id)));
    }
  }, [lists.data]);

  useEffect(() => {
    // A new zip: start its download at once (the link stays for saving it again).
    if (saved) linkRef.current?.click();
    return () => { if (saved) URL.revokeObjectURL(saved.url); };
  }, [saved]);

  const toggle = (set: Set<string>, key: string, on: boolean): Set<string> => {
    const next = new Set(set);
    if (on) next.add(key); else next.delete(key);
    return next;
  };

  const download = async (e: Event) => {
    e.preventDefault();
    if (!cams || !areas || busy) return;
    setBusy(true);
    setError(undefined);
    try {
      const csrf = cookie("lookout_csrf");
      const res = await fetch("/export", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/zip, application/json",
                   ...(csrf ? { "X-CSRF-Token": csrf } : {}) },
        body: JSON.stringify({ cameras: [...cams], areas: [...areas], from_date: from || undefined,
                               to_date: to || undefined, data_types: [...types] }),
      });
      if (!res.ok) {
        let detail = `${res.status} ${res.statusText}`;
        try {
          const body = await res.json();
          if (typeof body?.detail === "string") detail = body.detail;
          else if (Array.isArray(body?.detail)) detail = body.detail.map((d: { msg?: string }) => d.msg ?? String(d)).join("; ");
        } catch { /* not JSON */ }
        if (res.status === 503) {
          const wait = res.headers.get("Retry-After");
          detail = `The processor is busy building other exports; try again${wait ? ` in ${wait} seconds` : " shortly"}.`;
        }
        throw new ApiError(res.status, detail);
      }
      const blob = await res.blob();
      const disposition = res.headers.get("Content-Disposition") ?? "";
      const name = /filename="([^"]+)"/.exec(disposition)?.[1] ?? `lookout-export_${from}_${to}.zip`;
      const members = res.headers.get("X-Export-Members");
      const next = { url: URL.createObjectURL(blob), name, size: blob.size, members: members ? Number(members) : null };
      setSaved(next);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  if (!lists.data || !cams || !areas) {
    return (
      <section class="export-page">
        <PageHeader title="Export" />
        {lists.error ? <ErrorMessage error={lists.error} /> : <Loading what="cameras and areas" />}
      </section>
    );
  }
  const nothing = (cams.size === 0 && areas.size === 0) || types.size === 0;
  return (
    <section class="export-page">
      <PageHeader title="Export" />
      <p class="lead">A zip of the recorded data for the cameras, areas and dates you choose.</p>
      <form class="card manage-form" onSubmit={download} aria-busy={busy}>
        <div class="choice-columns">
          <fieldset>
            <legend>Cameras</legend>
            <ChoiceList items={lists.data.cameras} chosen={cams} onChange={setCams} toggle={toggle} what="cameras" />
          </fieldset>
          <fieldset>
            <legend>Areas</legend>
            <ChoiceList items={lists.data.areas} chosen={areas} onChange={setAreas} toggle={toggle} what="areas" />
          </fieldset>
        </div>
        <fieldset>
          <legend>Dates</legend>
          <div class="row date-row">
            <Field label="From">
              {(id) => <input id={id} type="date" value={from} max={to || undefined} required
                              onInput={(e) => setFrom(e.currentTarget.value)} />}
            </Field>
            <Field label="To">
              {(id) => <input id={id} type="date" value={to} min={from || undefined} required
                              onInput={(e) => setTo(e.currentTarget.value)} />}
            </Field>
          </div>
          <p class="hint">
            Dates are days in the processor's time zone{lists.data.timeZone ? ` (${lists.data.timeZone})` : ""}; at most 366 days.
          </p>
        </fieldset>
        <fieldset>
          <legend>Include</legend>
          <ul class="choice-list">
            {DATA_TYPES.map((t) => (
              <li key={t.key}>
                <label class="choice-with-hint">
                  <input type="checkbox" checked={types.has(t.key)} aria-describedby={`type-${t.key}-hint`}
                         onChange={(e) => setTypes(toggle(types, t.key, e.currentTarget.checked))} />
                  <span>{t.label}<span id={`type-${t.key}-hint`} class="hint">{t.hint}</span></span>
                </label>
              </li>
            ))}
          </ul>
        </fieldset>
        <ErrorMessage error={error} />
        <div class="form-actions">
          <button type="submit" class="btn primary" disabled={busy || nothing}>
            {busy ? "Building the zip…" : "Download zip"}
          </button>
          {nothing ? <span class="hint">Choose at least one camera or area and one kind of data.</span> : null}
        </div>
        <div aria-live="polite">
          {busy ? <p class="loading">Building the zip; large date ranges take a while…</p> : null}
          {saved && !busy ? (
            <p class="notice export-done">
              Ready: <a ref={linkRef} href={saved.url} download={saved.name}>{saved.name}</a>
              {" "}({sizeText(saved.size)}{saved.members !== null ? `, ${saved.members} file${saved.members === 1 ? "" : "s"}` : ""}).
              {saved.members === 0 ? " The zip is empty: there is no data for these choices." : ""}
            </p>
          ) : null}
        </div>
      </form>
    </section>
  );
}

function ChoiceList(props: {
  items: Named[]; chosen: Set<string>; onChange: (s: Set<string>) => void; what: string;
  toggle: (set: Set<string>, key: string, on: boolean) => Set<string>;
}) {
  if (props.items.length === 0) return <p class="hint">No {props.what} configured.</p>;
  const all = props.items.every((i) => props.chosen.has(i.id));
  return (
    <>
      <button type="button" class="btn plain small" aria-label={`${all ? "Clear" : "Select"} all ${props.what}`}
              onClick={() => props.onChange(all ? new Set() : new Set(props.items.map((i) => i.id)))}>
        {all ? "Clear all" : "Select all"}
      </button>
      <ul class="choice-list">
        {props.items.map((item) => (
          <li key={item.id}>
            <label>
              <input type="checkbox" checked={props.chosen.has(item.id)}
                     onChange={(e) => props.onChange(props.toggle(props.chosen, item.id, e.currentTarget.checked))} />
              {" "}{item.name || item.id} {item.name && item.name !== item.id ? <span class="hint">({item.id})</span> : null}
            </label>
          </li>
        ))}
      </ul>
    </>
  );
}
