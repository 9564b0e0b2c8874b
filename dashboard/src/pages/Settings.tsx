// #/settings: notifications and integrations — the processor-wide [Output_N] sinks and the
// [SourceLogger_N] / [AreaLogger_N] sections — with their keys, on/off, and "Send a test".
import "./manage.css";

import { useEffect, useState } from "preact/hooks";

import { api } from "../api";
import { ActionButton, ErrorMessage, Field, Loading, Notice, PageHeader, ReadOnlyNote, useAsync, useInterval } from "../components/ui";
import { useSession } from "../session";
import { CheckField } from "./cameraCommon";
import type { PageProps } from ".";

interface Part { section: string; name: string; enabled: boolean; values: Record<string, string> }
interface SinkStatus {
  name?: string; connected?: boolean; queued?: number; delivered?: number; dropped?: number;
  last_error?: string | null; endpoint?: string; signed?: boolean;
}
interface TestResult { ok: boolean; detail: string }

type Kind = "outputs" | "source_loggers" | "area_loggers";
const KINDS: { kind: Kind; title: string; what: string }[] = [
  { kind: "outputs", title: "Processor-wide outputs", what: "Every record of every camera and area ([Output_N])." },
  { kind: "source_loggers", title: "Camera loggers", what: "Run for every camera ([SourceLogger_N])." },
  { kind: "area_loggers", title: "Area loggers", what: "Run for every area ([AreaLogger_N])." },
];
/** Loggers that write to this box's disk: edited here, but they have nothing to test. */
const LOCAL = new Set(["file_system_logger", "video_logger"]);
const SECRET_KEY = /(secret|authorization|password|token|key)$/i;
const HINTS: Record<string, string> = {
  Endpoint: "The receiver's URL (https:// recommended).",
  Authorization: "Sent as the Authorization header, e.g. Bearer <token>.",
  Secret: "Shared with the receiver to sign requests (HMAC-SHA256); empty sends them unsigned.",
  TimeInterval: "Seconds of video between two samples sent per camera.",
  SendingInterval: "Least seconds between two requests.",
  Timeout: "Seconds to wait for the receiver.",
  OutboxMaxBytes: "Disk kept for undelivered records; the oldest go when it is full.",
  Kinds: "Comma-separated record kinds; empty sends the samples and every event.",
  ScreenshotPeriod: "Minutes between screenshots; 0 takes none.",
  MaxFPS: "Most preview pictures written per second.",
  JpegQuality: "1-100.",
};

/** A person's title for a section: what it does and what it covers; the section name stays
 *  beside it as secondary text. */
export function partTitle(kind: Kind, part: Part): string {
  const scope = kind === "outputs" ? "every camera and area" : kind === "source_loggers" ? "every camera" : "every area";
  if (part.name === "web_hook_logger") return `Webhook — ${scope}`;
  if (part.name === "file_system_logger") return kind === "area_loggers" ? "Area file logs" : "File logs";
  if (part.name === "video_logger") return "Video recordings";
  return part.name;
}

/** Why "Send a test" cannot be used now, or null when it can. */
function testBlocked(part: Part): string | null {
  if ("Endpoint" in part.values && !part.values.Endpoint.trim()) return "Set an Endpoint first (Show settings).";
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
      {parts.data ? (
        <>
          {KINDS.map((k) => {
            const list = parts.data![k.kind];
            const sinks = list.filter((p) => !LOCAL.has(p.name));
            const local = list.filter((p) => LOCAL.has(p.name));
            return (
              <section key={k.kind} class="settings-group" aria-labelledby={`group-${k.kind}`}>
                <h2 id={`group-${k.kind}`}>{k.title}</h2>
                <p class="hint">{k.what}</p>
                {sinks.length === 0 && local.length === 0 ? <p class="empty-state">None configured.</p> : null}
                <div class="parts">
                  {sinks.map((p) => (
                    <PartCard key={p.section} kind={k.kind} part={p} status={statuses[p.section]} canEdit={canEdit}
                              testable onChanged={changed} />
                  ))}
                  {local.map((p) => (
                    <PartCard key={p.section} kind={k.kind} part={p} status={statuses[p.section]} canEdit={canEdit}
                              testable={false} onChanged={changed} />
                  ))}
                </div>
                {!list.some((p) => p.name === "web_hook_logger") ? (
                  <AddWebhook kind={k.kind} canEdit={canEdit} onAdded={changed} />
                ) : null}
              </section>
            );
          })}
        </>
      ) : parts.error ? <ErrorMessage error={parts.error} /> : <Loading what="settings" />}
    </section>
  );
}

function PartCard(props: { kind: Kind; part: Part; status?: SinkStatus; canEdit: boolean; testable: boolean;
                           onChanged: () => void }) {
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
          {st.endpoint ? <div class="wide"><dt>Sends to</dt><dd>{st.endpoint}</dd></div> : null}
          <div><dt>Connected</dt><dd>{st.connected ? "yes" : "no"}</dd></div>
          <div><dt>Queued</dt><dd>{st.queued ?? 0}</dd></div>
          <div><dt>Delivered</dt><dd>{st.delivered ?? 0}</dd></div>
          <div><dt>Dropped</dt><dd>{st.dropped ?? 0}</dd></div>
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
            {keys.map((k) => (
              <Field key={k} label={k} hint={HINTS[k]}>
                {(id, d) => (
                  <input id={id} value={values[k] ?? ""} disabled={!canEdit} aria-describedby={d}
                         type={(SECRET_KEY.test(k) ? "password" : "text") as "text"} autoComplete="off"
                         onInput={(e) => setValues({ ...values, [k]: e.currentTarget.value })} />
                )}
              </Field>
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

function AddWebhook(props: { kind: Kind; canEdit: boolean; onAdded: () => void }) {
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
        <Field label="Endpoint URL" hint={HINTS.Endpoint}>
          {(id, d) => <input id={id} type="url" required value={endpoint} aria-describedby={d}
                             placeholder="https://receiver.example.com/lookout"
                             onInput={(e) => setEndpoint(e.currentTarget.value)} />}
        </Field>
        <Field label="Authorization header" hint={HINTS.Authorization}>
          {(id, d) => <input id={id} type="password" autoComplete="off" value={authorization} aria-describedby={d}
                             onInput={(e) => setAuthorization(e.currentTarget.value)} />}
        </Field>
        <Field label="Signing secret" hint={HINTS.Secret}>
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
