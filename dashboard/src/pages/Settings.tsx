// #/settings: notifications and integrations — the Slack / e-mail notifications and their
// [App] keys, the processor-wide [Output_N] sinks, the [SourceLogger_N] / [AreaLogger_N]
// sections and the [PeriodicTask_N] tasks — with their keys, on/off, and "Send a test".
// What each key means comes from the API (GET /config/keys: the config models' own
// descriptions), never repeated here.
import "./manage.css";

import { useEffect, useState } from "preact/hooks";

import { api } from "../api";
import { ActionButton, ErrorMessage, Field, Loading, Notice, PageHeader, ReadOnlyNote, useAsync, useInterval } from "../components/ui";
import { useSession } from "../session";
import { CheckField } from "./cameraCommon";
import { NotificationsCard, type NotifierStatus } from "./Notifications";
import type { PageProps } from ".";

interface Part { section: string; name: string; enabled: boolean; values: Record<string, string> }
interface SinkStatus {
  name?: string; connected?: boolean; queued?: number; delivered?: number; dropped?: number;
  last_error?: string | null; endpoint?: string; signed?: boolean;
  broker?: string; database?: string; url?: string; bucket?: string; topic_prefix?: string;
  scrapes?: number; uploaded?: number;
}
interface TestResult { ok: boolean; detail: string }
/** GET /config/keys: what every key means, and which parts have a test. */
export interface ConfigKeys {
  sections: Record<string, Record<string, string>>;
  parts: Record<string, Record<string, { testable: boolean; keys: Record<string, string> }>>;
}

type Kind = "outputs" | "source_loggers" | "area_loggers" | "periodic_tasks";
const KINDS: { kind: Kind; title: string; what: string }[] = [
  { kind: "outputs", title: "Processor-wide outputs", what: "Every record of every camera and area ([Output_N])." },
  { kind: "source_loggers", title: "Camera loggers", what: "Run for every camera ([SourceLogger_N])." },
  { kind: "area_loggers", title: "Area loggers", what: "Run for every area ([AreaLogger_N])." },
  { kind: "periodic_tasks", title: "Scheduled tasks", what: "Run by the processor on a timer ([PeriodicTask_N])." },
];
/** Keys whose values are credentials: typed as passwords (the API masks them for viewers). */
export const SECRET_KEY = /(secret|authorization|password|token|key)$/i;
/** A key whose value is a boolean: a checkbox. */
const BOOLEAN = /^(true|false)$/i;
/** What a sink sends to, by name: the part of the title before the scope. */
const SINK_TITLES: Record<string, string> = {
  web_hook_logger: "Webhook",
  mqtt_logger: "MQTT broker",
  redis_logger: "Redis",
  influxdb_logger: "InfluxDB",
  postgres_logger: "Fleet database (PostgreSQL)",
  s3_logger: "S3 screenshots",
};

/** A person's title for a section: what it does and what it covers; the section name stays
 *  beside it as secondary text. */
export function partTitle(kind: Kind, part: Part): string {
  const scope = kind === "outputs" ? "every camera and area" : kind === "source_loggers" ? "every camera" : "every area";
  const sink = SINK_TITLES[part.name];
  if (sink) return `${sink} — ${scope}`;
  if (part.name === "prometheus") return "Prometheus metrics";
  if (part.name === "s3_backup") return "S3 backup — the previous day's data and reports";
  if (part.name === "metrics") return "Metrics files";
  if (part.name === "file_system_logger") return kind === "area_loggers" ? "Area file logs" : "File logs";
  if (part.name === "video_logger") return "Video recordings";
  return part.name;
}

/** The key without which a sink has nowhere to send. */
const REQUIRED: Record<string, string> = { web_hook_logger: "Endpoint", mqtt_logger: "Host" };

/** Why "Send a test" cannot be used now, or null when it can. */
function testBlocked(part: Part): string | null {
  const key = REQUIRED[part.name];
  if (key && key in part.values && !part.values[key].trim()) {
    return `Set ${key === "Host" ? "a Host" : "an Endpoint"} first (Show settings).`;
  }
  if (!part.enabled) return "Turn it on first: it is off.";
  return null;
}

export function testPath(kind: Kind, part: Part): string {
  return `/${kind}/${encodeURIComponent(part.name)}/test`;
}

export function SettingsPage(_props: PageProps) {
  const { canEdit } = useSession();
  const parts = useAsync(async (signal) => {
    const lists = await Promise.all(KINDS.map((k) => api.get<Part[]>(`/${k.kind}`, signal)));
    return Object.fromEntries(KINDS.map((k, i) => [k.kind, lists[i]])) as Record<Kind, Part[]>;
  });
  const keys = useAsync((signal) => api.get<ConfigKeys>("/config/keys", signal));
  const [statuses, setStatuses] = useState<Record<string, SinkStatus>>({});
  const loadStatus = () => {
    api.get<{ outputs?: Record<string, SinkStatus> }>("/status")
      .then((s) => setStatuses(s.outputs ?? {}))
      .catch(() => {});
  };
  useEffect(loadStatus, []);
  useInterval(loadStatus, 3000);
  const changed = () => {
    parts.reload();
    loadStatus();
  };

  return (
    <section class="settings-page">
      <PageHeader title="Settings" />
      <p class="lead">Notifications and integrations: where the processor sends what it records.</p>
      {!canEdit ? <ReadOnlyNote /> : null}
      {parts.data && keys.data ? (
        <>
          <NotificationsCard canEdit={canEdit} appKeys={keys.data.sections.App ?? {}}
                             status={statuses.notifications as NotifierStatus | undefined} />
          {KINDS.map((k) => {
            const list = parts.data![k.kind];
            const known = keys.data!.parts[k.kind] ?? {};
            const testable = (p: Part) => known[p.name]?.testable ?? false;
            const hints = (p: Part) => known[p.name]?.keys ?? {};
            const sinks = list.filter(testable);
            const local = list.filter((p) => !testable(p));
            return (
              <section key={k.kind} class="settings-group" aria-labelledby={`group-${k.kind}`}>
                <h2 id={`group-${k.kind}`}>{k.title}</h2>
                <p class="hint">{k.what}</p>
                {sinks.length === 0 && local.length === 0 ? <p class="empty-state">None configured.</p> : null}
                <div class="parts">
                  {sinks.map((p) => (
                    <PartCard key={p.section} kind={k.kind} part={p} status={statuses[p.section]} canEdit={canEdit}
                              testable hints={hints(p)} onChanged={changed} />
                  ))}
                  {local.map((p) => (
                    <PartCard key={p.section} kind={k.kind} part={p} status={statuses[p.section]} canEdit={canEdit}
                              testable={false} hints={hints(p)} onChanged={changed} />
                  ))}
                </div>
                {k.kind !== "periodic_tasks" && !list.some((p) => p.name === "web_hook_logger") ? (
                  <AddWebhook kind={k.kind} canEdit={canEdit} onAdded={changed}
                              hints={keys.data!.parts[k.kind]?.web_hook_logger?.keys ?? {}} />
                ) : null}
              </section>
            );
          })}
        </>
      ) : parts.error || keys.error ? <ErrorMessage error={parts.error ?? keys.error} /> : <Loading what="settings" />}
    </section>
  );
}

function PartCard(props: { kind: Kind; part: Part; status?: SinkStatus; canEdit: boolean; testable: boolean;
                           hints: Record<string, string>; onChanged: () => void }) {
  const { part, canEdit } = props;
  const keys = Object.keys(part.values).filter((k) => k !== "Name" && k !== "Enabled");
  const [values, setValues] = useState<Record<string, string>>(part.values);
  const [open, setOpen] = useState(false);
  const [error, setError] = useState<unknown>(undefined);
  const [notice, setNotice] = useState<string | null>(null);
  const [test, setTest] = useState<TestResult | null>(null);
  useEffect(() => setValues(part.values), [part]);
  const path = `/${props.kind}/${encodeURIComponent(part.name)}`;
  const changed = Object.fromEntries(keys.filter((k) => values[k] !== part.values[k]).map((k) => [k, values[k]]));
  const dirty = Object.keys(changed).length > 0;
  const titleId = `part-${part.section}`;
  const title = partTitle(props.kind, part);
  const blocked = props.testable ? testBlocked(part) : null;
  const st = props.status;

  const run = async (fn: () => Promise<unknown>, done: string) => {
    setError(undefined);
    setNotice(null);
    try {
      await fn();
      setNotice(done);
      props.onChanged();
    } catch (e) {
      setError(e);
    }
  };

  return (
    <article class="card part-card" aria-labelledby={titleId}>
      <div class="part-head">
        <h3 id={titleId}>{title} <span class="part-section">{part.section} · {part.name}</span></h3>
        <span class={`cam-state ${part.enabled ? "ok" : "idle"}`}>{part.enabled ? "on" : "off"}</span>
      </div>
      {st ? (
        <dl class="sink-facts">
          {st.endpoint ?? st.broker ?? st.database ? (
            <div class="wide"><dt>Sends to</dt><dd>{st.endpoint ?? st.broker ?? st.database}</dd></div>
          ) : null}
          {st.url ? <div class="wide"><dt>Scraped at</dt><dd>{st.url}</dd></div> : null}
          {st.bucket ? <div class="wide"><dt>Bucket</dt><dd>{st.bucket}</dd></div> : null}
          {st.topic_prefix ? <div class="wide"><dt>Topics</dt><dd>{st.topic_prefix}/…</dd></div> : null}
          {st.scrapes !== undefined ? <div><dt>Scrapes</dt><dd>{st.scrapes}</dd></div> : null}
          {st.connected !== undefined ? <div><dt>Connected</dt><dd>{st.connected ? "yes" : "no"}</dd></div> : null}
          {st.queued !== undefined ? <div><dt>Queued</dt><dd>{st.queued}</dd></div> : null}
          {st.delivered !== undefined ? <div><dt>Delivered</dt><dd>{st.delivered}</dd></div> : null}
          {st.dropped !== undefined ? <div><dt>Dropped</dt><dd>{st.dropped}</dd></div> : null}
          {st.signed !== undefined ? <div class="wide"><dt>Signed</dt><dd>{st.signed ? "yes (Secret set)" : "no: set a Secret to sign requests"}</dd></div> : null}
          {st.last_error ? <div class="wide"><dt>Last error</dt><dd class="cam-error">{st.last_error}</dd></div> : null}
        </dl>
      ) : null}
      <div class="form-actions">
        {props.testable ? (
          <ActionButton kind="primary" disabled={!canEdit || blocked !== null} describedBy={blocked ? `${titleId}-test-why` : undefined}
                        label={`Send a test through ${part.name} (${part.section})`}
                        onError={(e) => { setTest(null); setError(e); }}
                        onClick={async () => {
                          setTest(null);
                          setError(undefined);
                          const r = await api.post<TestResult>(testPath(props.kind, part));
                          setTest(r);
                        }}>
            Send a test
          </ActionButton>
        ) : null}
        <ActionButton disabled={!canEdit} label={`${part.enabled ? "Turn off" : "Turn on"} ${part.name} (${part.section})`}
                      onClick={() => run(() => api.put(path, { Enabled: !part.enabled }),
                                         `${part.name} turned ${part.enabled ? "off" : "on"}.`)}>
          {part.enabled ? "Turn off" : "Turn on"}
        </ActionButton>
        <button type="button" class="btn plain" aria-expanded={open} aria-controls={`${titleId}-keys`}
                aria-label={`${open ? "Hide" : "Show"} settings of ${part.name} (${part.section})`}
                onClick={() => setOpen(!open)}>
          {open ? "Hide settings" : "Show settings"}
        </button>
        {props.testable ? (
          <ActionButton kind="danger" disabled={!canEdit} label={`Remove ${part.name} (${part.section})`}
                        confirm={`Remove ${part.name} ([${part.section}])? Records it has not delivered are not sent.`}
                        onClick={() => run(() => api.del(path), `${part.name} removed.`)}>
            Remove
          </ActionButton>
        ) : null}
      </div>
      {blocked && canEdit ? <p id={`${titleId}-test-why`} class="hint test-why">{blocked}</p> : null}
      <div aria-live="polite">
        {test ? (
          <p class={test.ok ? "notice" : "error"} role={test.ok ? "status" : "alert"}>
            {test.ok ? "Test sent: " : "Test failed: "}{test.detail}
          </p>
        ) : null}
      </div>
      <ErrorMessage error={error} />
      {notice ? <Notice>{notice}</Notice> : null}
      {open ? (
        <form id={`${titleId}-keys`} class="part-keys" onSubmit={(e) => {
          e.preventDefault();
          if (dirty) void run(() => api.put(path, changed), `Settings of ${part.name} saved.`);
        }}>
          <div class="form-grid">
            {keys.filter((k) => !BOOLEAN.test(part.values[k] ?? "")).map((k) => (
              <Field key={k} label={k} hint={props.hints[k] || undefined}>
                {(id, d) => (
                  <input id={id} value={values[k] ?? ""} disabled={!canEdit} aria-describedby={d}
                         type={(SECRET_KEY.test(k) ? "password" : "text") as "text"} autoComplete="off"
                         onInput={(e) => setValues({ ...values, [k]: e.currentTarget.value })} />
                )}
              </Field>
            ))}
          </div>
          <div class="checks">
            {keys.filter((k) => BOOLEAN.test(part.values[k] ?? "")).map((k) => (
              <CheckField key={k} label={k} hint={props.hints[k] || undefined} disabled={!canEdit}
                          checked={/^true$/i.test(values[k] ?? "")}
                          onChange={(v) => setValues({ ...values, [k]: v ? "True" : "False" })} />
            ))}
          </div>
          <div class="form-actions">
            <button type="submit" class="btn primary" disabled={!canEdit || !dirty}>Save settings</button>
            <button type="button" class="btn plain" disabled={!dirty} onClick={() => setValues(part.values)}>Undo changes</button>
          </div>
        </form>
      ) : null}
    </article>
  );
}

function AddWebhook(props: { kind: Kind; canEdit: boolean; onAdded: () => void; hints: Record<string, string> }) {
  const [open, setOpen] = useState(false);
  const [endpoint, setEndpoint] = useState("");
  const [authorization, setAuthorization] = useState("");
  const [secret, setSecret] = useState("");
  const [enabled, setEnabled] = useState(true);
  const [error, setError] = useState<unknown>(undefined);
  const [busy, setBusy] = useState(false);
  const formId = `add-webhook-${props.kind}`;
  const toggle = (
    <button type="button" class="btn plain add-webhook" disabled={!props.canEdit} aria-expanded={open}
            aria-controls={open ? formId : undefined} onClick={() => setOpen(!open)}>
      Add a webhook{props.kind === "outputs" ? "" : props.kind === "source_loggers" ? " for every camera" : " for every area"}
    </button>
  );
  if (!open) return toggle;
  return (
    <>
    {toggle}
    <form id={formId} class="card add-webhook-form" onSubmit={async (e) => {
      e.preventDefault();
      setBusy(true);
      setError(undefined);
      try {
        await api.post(`/${props.kind}`, { Name: "web_hook_logger", Endpoint: endpoint.trim(),
                                           Authorization: authorization, Secret: secret, Enabled: enabled });
        setOpen(false);
        props.onAdded();
      } catch (err) {
        setError(err);
      } finally {
        setBusy(false);
      }
    }}>
      <h3>New webhook</h3>
      <div class="form-grid">
        <Field label="Endpoint URL" hint={props.hints.Endpoint}>
          {(id, d) => <input id={id} type="url" required value={endpoint} aria-describedby={d}
                             placeholder="https://receiver.example.com/lookout"
                             onInput={(e) => setEndpoint(e.currentTarget.value)} />}
        </Field>
        <Field label="Authorization header" hint={props.hints.Authorization}>
          {(id, d) => <input id={id} type="password" autoComplete="off" value={authorization} aria-describedby={d}
                             onInput={(e) => setAuthorization(e.currentTarget.value)} />}
        </Field>
        <Field label="Signing secret" hint={props.hints.Secret}>
          {(id, d) => <input id={id} type="password" autoComplete="off" value={secret} aria-describedby={d}
                             onInput={(e) => setSecret(e.currentTarget.value)} />}
        </Field>
        <div class="checks">
          <CheckField label="On" checked={enabled} onChange={setEnabled} />
        </div>
      </div>
      <ErrorMessage error={error} />
      <div class="form-actions">
        <button type="submit" class="btn primary" disabled={busy || !endpoint.trim()}>{busy ? "Adding…" : "Add webhook"}</button>
        <button type="button" class="btn plain" onClick={() => setOpen(false)}>Cancel</button>
      </div>
    </form>
    </>
  );
}
