// Areas: groups of cameras whose occupancy is summed. Add, edit and delete them, choose their
// cameras, and edit their occupancy rules as a weekly schedule (days, from, to, limit).
import "../components/canvas.css";

import { useEffect, useState } from "preact/hooks";

import { api } from "../api";
import { ErrorMessage, Field, Loading, Notice, PageHeader, ReadOnlyNote, useAsync } from "../components/ui";
import { useSession } from "../session";
import type { PageProps } from ".";

interface Area {
  id: string;
  name: string;
  cameras: string[];
  occupancy_threshold: number;
  occupancy_rules: string;
  rules: Rule[];
}
interface Camera { id: string; name?: string }
interface Rule { days: string[]; start: string; end: string; limit: number }
interface RuleRow { key: number; days: string[]; start: string; end: string; limit: string }

const DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const DAY_NAMES: Record<string, string> = {
  Mon: "Monday", Tue: "Tuesday", Wed: "Wednesday", Thu: "Thursday", Fri: "Friday", Sat: "Saturday", Sun: "Sunday",
};
let rowKey = 0;

function toRows(rules: Rule[]): RuleRow[] {
  return rules.map((r) => ({ key: ++rowKey, days: [...r.days], start: r.start, end: r.end === "24:00" ? "00:00" : r.end, limit: String(r.limit) }));
}

function cameraLabel(cameras: Camera[], id: string): string {
  const c = cameras.find((x) => x.id === id);
  return c?.name ? `${c.name} (${id})` : id;
}

/** Checkboxes for the cameras of an area. */
function CameraChoice(props: { legend: string; cameras: Camera[]; value: string[]; disabled: boolean;
                               onChange: (ids: string[]) => void }) {
  return (
    <fieldset class="fieldset">
      <legend>{props.legend}</legend>
      {props.cameras.length === 0 ? <p class="muted">No cameras yet.</p> : null}
      <div class="check-grid">
        {props.cameras.map((c) => (
          <label key={c.id}>
            <input type="checkbox" checked={props.value.includes(c.id)} disabled={props.disabled}
                   onChange={(e) => props.onChange(e.currentTarget.checked
                     ? [...props.value, c.id] : props.value.filter((x) => x !== c.id))} />
            {cameraLabel(props.cameras, c.id)}
          </label>
        ))}
        {props.value.filter((id) => !props.cameras.some((c) => c.id === id)).map((id) => (
          <label key={id}>
            <input type="checkbox" checked disabled={props.disabled}
                   onChange={() => props.onChange(props.value.filter((x) => x !== id))} />
            {id} (unknown camera)
          </label>
        ))}
      </div>
    </fieldset>
  );
}

/** The weekly schedule of occupancy rules: one row per (days, from, to, max people). */
export function ScheduleEditor(props: { areaName: string; rows: RuleRow[]; disabled: boolean;
                                        onChange: (rows: RuleRow[]) => void }) {
  const set = (key: number, patch: Partial<RuleRow>) =>
    props.onChange(props.rows.map((r) => (r.key === key ? { ...r, ...patch } : r)));
  return (
    <div>
      {props.rows.length === 0 ? (
        <p class="muted">No rules: the occupancy threshold applies at all times.</p>
      ) : (
        <div class="table-wrap">
          <table class="schedule">
            <caption class="visually-hidden">Occupancy rules of {props.areaName}</caption>
            <thead>
              <tr><th scope="col">Days</th><th scope="col">From</th><th scope="col">To</th>
                <th scope="col">Max people</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr>
            </thead>
            <tbody>
              {props.rows.map((r, i) => (
                <tr key={r.key}>
                  <td data-label="Days">
                    <div class="day-boxes" role="group" aria-label={`Days of rule ${i + 1}`}>
                      {DAYS.map((d) => (
                        <label key={d} title={DAY_NAMES[d]}>
                          <span aria-hidden="true">{d}</span>
                          <input type="checkbox" aria-label={`Rule ${i + 1} ${DAY_NAMES[d]}`} checked={r.days.includes(d)}
                                 disabled={props.disabled}
                                 onChange={(e) => set(r.key, {
                                   days: e.currentTarget.checked
                                     ? DAYS.filter((x) => x === d || r.days.includes(x))
                                     : r.days.filter((x) => x !== d),
                                 })} />
                        </label>
                      ))}
                    </div>
                  </td>
                  <td data-label="From">
                    <input type="time" aria-label={`Rule ${i + 1} from`} value={r.start} disabled={props.disabled}
                           onInput={(e) => set(r.key, { start: e.currentTarget.value })} />
                  </td>
                  <td data-label="To">
                    <input type="time" aria-label={`Rule ${i + 1} to`} value={r.end} disabled={props.disabled}
                           onInput={(e) => set(r.key, { end: e.currentTarget.value })} />
                  </td>
                  <td data-label="Max people">
                    <input type="number" min="0" step="1" aria-label={`Rule ${i + 1} max people`} value={r.limit}
                           disabled={props.disabled} onInput={(e) => set(r.key, { limit: e.currentTarget.value })} />
                  </td>
                  <td>
                    <button type="button" class="btn danger" disabled={props.disabled} aria-label={`Remove rule ${i + 1}`}
                            onClick={() => props.onChange(props.rows.filter((x) => x.key !== r.key))}>Remove</button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <p class="hint">For a rule that runs until midnight, set "To" to 00:00 (12:00 AM).</p>
      <button type="button" class="btn plain" disabled={props.disabled}
              onClick={() => props.onChange([...props.rows, {
                key: ++rowKey, days: ["Mon", "Tue", "Wed", "Thu", "Fri"], start: "09:00", end: "18:00", limit: "10",
              }])}>Add rule</button>
    </div>
  );
}

function rowsToRules(rows: RuleRow[]): Rule[] | string {
  const out: Rule[] = [];
  for (const [i, r] of rows.entries()) {
    if (!r.days.length) return `Rule ${i + 1}: choose at least one day.`;
    if (!r.start || !r.end) return `Rule ${i + 1}: give both times.`;
    const limit = Number(r.limit);
    if (r.limit.trim() === "" || !Number.isInteger(limit) || limit < 0) return `Rule ${i + 1}: max people is a whole number, 0 or more.`;
    out.push({ days: r.days, start: r.start, end: r.end === "00:00" ? "24:00" : r.end, limit });
  }
  return out;
}

function AreaEditor(props: { area: Area; cameras: Camera[]; canEdit: boolean; onChanged: () => void }) {
  const a = props.area;
  const [name, setName] = useState(a.name);
  const [threshold, setThreshold] = useState(String(a.occupancy_threshold));
  const [cams, setCams] = useState<string[]>(a.cameras);
  const [rows, setRows] = useState<RuleRow[]>(toRows(a.rules));
  const [error, setError] = useState<unknown>(null);
  const [rulesError, setRulesError] = useState<unknown>(null);
  const [notice, setNotice] = useState("");
  const [rulesNotice, setRulesNotice] = useState("");
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    setName(a.name); setThreshold(String(a.occupancy_threshold)); setCams(a.cameras); setRows(toRows(a.rules));
  }, [a.id]);
  const headingId = `area-${a.id}-heading`;
  const dis = !props.canEdit || busy;

  const saveArea = async () => {
    setError(null); setNotice("");
    const t = Number(threshold);
    if (!Number.isInteger(t) || t < 0) { setError(new Error("The occupancy threshold is a whole number, 0 or more.")); return; }
    if (!cams.length) { setError(new Error("Choose at least one camera.")); return; }
    setBusy(true);
    try {
      await api.put(`/areas/${encodeURIComponent(a.id)}`, { name, occupancy_threshold: t });
      const same = cams.length === a.cameras.length && cams.every((c) => a.cameras.includes(c));
      if (!same) await api.put(`/areas/${encodeURIComponent(a.id)}/cameras`, { cameras: cams });
      setNotice("Area saved.");
      props.onChanged();
    } catch (e) { setError(e); } finally { setBusy(false); }
  };

  const saveRules = async () => {
    setRulesError(null); setRulesNotice("");
    const rules = rowsToRules(rows);
    if (typeof rules === "string") { setRulesError(new Error(rules)); return; }
    setBusy(true);
    try {
      await api.put(`/areas/${encodeURIComponent(a.id)}/occupancy_rules`, rules);
      setRulesNotice("Occupancy rules saved.");
      props.onChanged();
    } catch (e) { setRulesError(e); } finally { setBusy(false); }
  };

  const remove = async () => {
    if (!window.confirm(`Delete area ${a.name || a.id}?`)) return;
    setBusy(true);
    try {
      await api.del(`/areas/${encodeURIComponent(a.id)}`);
      props.onChanged();
    } catch (e) { setError(e); setBusy(false); }
  };

  return (
    <article class="card area-card" aria-labelledby={headingId}>
      <h2 id={headingId}>{a.name || a.id} <span class="muted" style={{ fontWeight: 400, fontSize: ".9rem" }}>({a.id})</span></h2>
      <div class="row">
        <Field label="Name">{(id) => <input id={id} value={name} maxLength={256} disabled={dis}
                                            onInput={(e) => setName(e.currentTarget.value)} />}</Field>
        <Field label="Occupancy threshold" hint="People allowed when no rule applies; 0 = no limit.">
          {(id, hint) => <input id={id} type="number" min="0" step="1" value={threshold} disabled={dis}
                                aria-describedby={hint} onInput={(e) => setThreshold(e.currentTarget.value)} />}
        </Field>
      </div>
      <CameraChoice legend="Cameras" cameras={props.cameras} value={cams} disabled={dis} onChange={setCams} />
      <div class="save-bar">
        <button type="button" class="btn primary" disabled={dis} onClick={saveArea}
                aria-label={`Save area ${a.name || a.id}`}>Save area</button>
        <button type="button" class="btn danger" disabled={dis} onClick={remove}
                aria-label={`Delete area ${a.name || a.id}`}>Delete area</button>
      </div>
      <ErrorMessage error={error} />
      {notice ? <Notice>{notice}</Notice> : null}
      <h3>Occupancy rules</h3>
      <ScheduleEditor areaName={a.name || a.id} rows={rows} disabled={dis} onChange={(r) => { setRows(r); setRulesNotice(""); }} />
      <div class="save-bar">
        <button type="button" class="btn primary" disabled={dis} onClick={saveRules}
                aria-label={`Save rules of ${a.name || a.id}`}>Save rules</button>
      </div>
      <ErrorMessage error={rulesError} />
      {rulesNotice ? <Notice>{rulesNotice}</Notice> : null}
    </article>
  );
}

function NewArea(props: { cameras: Camera[]; onDone: () => void; onCancel: () => void }) {
  const [name, setName] = useState("");
  const [threshold, setThreshold] = useState("0");
  const [cams, setCams] = useState<string[]>([]);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const add = async (e: Event) => {
    e.preventDefault();
    setError(null);
    if (!name.trim()) { setError(new Error("Give the area a name.")); return; }
    if (!cams.length) { setError(new Error("Choose at least one camera.")); return; }
    const t = Number(threshold);
    if (!Number.isInteger(t) || t < 0) { setError(new Error("The occupancy threshold is a whole number, 0 or more.")); return; }
    setBusy(true);
    try {
      await api.post("/areas", { name: name.trim(), cameras: cams, occupancy_threshold: t });
      props.onDone();
    } catch (err) { setError(err); } finally { setBusy(false); }
  };
  return (
    <form class="card area-new" onSubmit={add} aria-labelledby="new-area-heading">
      <h2 id="new-area-heading">New area</h2>
      <div class="row">
        <Field label="Area name">{(id) => <input id={id} value={name} maxLength={256} disabled={busy}
                                                 onInput={(e) => { setName(e.currentTarget.value); setError(null); }} />}</Field>
        <Field label="Occupancy threshold" hint="0 = no limit.">
          {(id, hint) => <input id={id} type="number" min="0" step="1" value={threshold} disabled={busy}
                                aria-describedby={hint} onInput={(e) => setThreshold(e.currentTarget.value)} />}
        </Field>
      </div>
      <CameraChoice legend="Cameras of the new area" cameras={props.cameras} value={cams} disabled={busy} onChange={setCams} />
      <div class="save-bar">
        <button type="submit" class="btn primary" disabled={busy}>Add area</button>
        <button type="button" class="btn plain" onClick={props.onCancel}>Cancel</button>
      </div>
      <ErrorMessage error={error} />
    </form>
  );
}

export function AreasPage(_props: PageProps) {
  const { canEdit } = useSession();
  const [adding, setAdding] = useState(false);
  const data = useAsync(async (signal) => {
    const [areas, cameras] = await Promise.all([
      api.get<Area[]>("/areas", signal),
      api.get<Camera[]>("/cameras", signal),
    ]);
    return { areas, cameras };
  });
  return (
    <section class="areas-page">
      <PageHeader title="Areas">
        <button type="button" class="btn primary" disabled={!canEdit || adding} onClick={() => setAdding(true)}>Add area</button>
      </PageHeader>
      {!canEdit ? <ReadOnlyNote /> : null}
      <ErrorMessage error={data.error} />
      {data.loading && !data.data ? <Loading what="areas" /> : null}
      {adding && data.data ? (
        <NewArea cameras={data.data.cameras} onCancel={() => setAdding(false)}
                 onDone={() => { setAdding(false); data.reload(); }} />
      ) : null}
      {data.data ? (
        <div class="area-list" style={{ marginTop: "1rem" }}>
          {data.data.areas.length === 0 ? <p class="muted">No areas yet. An area sums the occupancy of its cameras.</p> : null}
          {data.data.areas.map((a) => (
            <AreaEditor key={a.id} area={a} cameras={data.data!.cameras} canEdit={canEdit} onChanged={data.reload} />
          ))}
        </div>
      ) : null}
    </section>
  );
}
