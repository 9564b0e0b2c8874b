// The Settings page's Notifications card: Slack (the incoming webhook through the /slack API,
// its URL write-only), e-mail (a test to an address through POST /notifications/email/test)
// and the [App] keys of the notifications, saved with PUT /app. The notifier is no numbered
// section, so it is not among the sinks below it.
import { useEffect, useState } from "preact/hooks";

import { api, ApiError } from "../api";
import { ActionButton, ErrorMessage, Field, Notice, useAsync } from "../components/ui";
import { CheckField } from "./cameraCommon";

interface SlackState { enabled: boolean; configured: boolean; source: string | null; channel: string }
interface TestResult { ok: boolean; detail: string }
interface AppSection { section: string | null; values: Record<string, string> }
/** One channel under GET /status outputs.notifications (present while the notifier runs). */
export interface ChannelStatus {
  connected?: boolean; queued?: number; delivered?: number; dropped?: number;
  last_error?: string | null; server?: string | null; webhook?: string | null; config_error?: string;
}
export interface NotifierStatus { alerts?: number; reports?: number; email?: ChannelStatus; slack?: ChannelStatus }

/** The [App] keys of the alerts and global reports, in the order a person reads them (the
 *  Slack card edits EnableSlackNotifications and SlackChannel). */
const APP_KEYS = ["OccupancyAlertsMinInterval", "GlobalReportingEmails", "GlobalReportTime", "DailyGlobalReport",
                  "WeeklyGlobalReport"];
const BOOLEAN_KEYS = new Set(["DailyGlobalReport", "WeeklyGlobalReport"]);
const CHANNEL = /^[#@]?[A-Za-z0-9][A-Za-z0-9._-]{0,79}$/;

const isTrue = (v: string | undefined) => /^(true|yes|on|1)$/i.test((v ?? "").trim());

/** A test's answer, or the API's reason it failed (400: nothing to test with; 502: the
 *  server refused or was unreachable). */
function TestAnswer(props: { result: TestResult | null; error: unknown; id: string }) {
  return (
    <div id={props.id} aria-live="polite">
      {props.result ? <p class="notice" role="status">Test sent: {props.result.detail}</p> : null}
      {props.error ? (
        <p class="error" role="alert">
          Test failed{props.error instanceof ApiError ? ` (${props.error.status})` : ""}:{" "}
          {props.error instanceof ApiError ? props.error.detail : props.error instanceof Error ? props.error.message : String(props.error)}
        </p>
      ) : null}
    </div>
  );
}

function ChannelFacts(props: { st?: ChannelStatus; where: string }) {
  const st = props.st;
  if (!st) return null;
  return (
    <dl class="sink-facts">
      {props.where ? <div class="wide"><dt>Sends through</dt><dd>{props.where}</dd></div> : null}
      <div><dt>Connected</dt><dd>{st.connected ? "yes" : "no"}</dd></div>
      <div><dt>Queued</dt><dd>{st.queued ?? 0}</dd></div>
      <div><dt>Delivered</dt><dd>{st.delivered ?? 0}</dd></div>
      <div><dt>Dropped</dt><dd>{st.dropped ?? 0}</dd></div>
      {st.last_error ? <div class="wide"><dt>Last error</dt><dd class="cam-error">{st.last_error}</dd></div> : null}
    </dl>
  );
}

export function NotificationsCard(props: { canEdit: boolean; appKeys: Record<string, string>; status?: NotifierStatus }) {
  const { canEdit } = props;
  const slack = useAsync((signal) => api.get<SlackState>("/slack/is-enabled", signal));
  const app = useAsync((signal) => api.get<AppSection>("/app", signal));
  const reload = () => {
    slack.reload();
    app.reload();
  };
  return (
    <section class="settings-group" aria-labelledby="group-notifications">
      <h2 id="group-notifications">Notifications</h2>
      <p class="hint">
        Alerts and reports by e-mail and Slack. Each camera and area chooses its own in its settings (Emails,
        EnableSlackNotifications, NotifyEveryMinutes, DailyReport); the processor-wide keys are here.
      </p>
      <div class="parts">
        {slack.data && app.data ? (
          <SlackCard state={slack.data} on={isTrue(app.data.values.EnableSlackNotifications)} hints={props.appKeys}
                     canEdit={canEdit} status={props.status?.slack} onChanged={reload} />
        ) : <ErrorMessage error={slack.error ?? app.error} />}
        <EmailCard canEdit={canEdit} status={props.status?.email} />
        {app.data ? <AppKeysCard values={app.data.values} hints={props.appKeys} canEdit={canEdit} onSaved={reload} />
          : <ErrorMessage error={app.error} />}
      </div>
    </section>
  );
}

function SlackCard(props: { state: SlackState; on: boolean; hints: Record<string, string>; canEdit: boolean;
                            status?: ChannelStatus; onChanged: () => void }) {
  const { state, canEdit } = props;
  const [url, setUrl] = useState("");
  const [channel, setChannel] = useState(state.channel);
  const [error, setError] = useState<unknown>(undefined);
  const [notice, setNotice] = useState<string | null>(null);
  const [test, setTest] = useState<TestResult | null>(null);
  const [testError, setTestError] = useState<unknown>(undefined);
  useEffect(() => setChannel(state.channel), [state.channel]);
  const channelOk = channel.trim() === "" || CHANNEL.test(channel.trim());
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
  const where = state.configured ? (state.source === "environment" ? "set in the environment (LOOKOUT_SLACK_WEBHOOK_URL)" : "set here") : "not set";
  return (
    <article class="card part-card" aria-labelledby="notify-slack">
      <div class="part-head">
        <h3 id="notify-slack">Slack <span class="part-section">incoming webhook · [App]</span></h3>
        <span class={`cam-state ${state.enabled ? "ok" : "idle"}`}>{state.enabled ? "on" : "off"}</span>
      </div>
      <dl class="sink-facts">
        <div class="wide"><dt>Webhook URL</dt><dd>{where}</dd></div>
        <div class="wide"><dt>EnableSlackNotifications</dt><dd>{props.on ? "True" : "False"}</dd></div>
        <div class="wide"><dt>Channel</dt><dd>{state.channel || "the webhook's own"}</dd></div>
      </dl>
      <ChannelFacts st={props.status} where={props.status?.webhook ?? ""} />
      <form class="part-keys" onSubmit={(e) => {
        e.preventDefault();
        const body: { webhook_url: string; channel?: string } = { webhook_url: url.trim() };
        if (channel.trim() && channel.trim() !== state.channel) body.channel = channel.trim();
        void run(async () => {
          await api.put("/slack/enable", body);
          setUrl(""); // write-only: never kept nor shown back
        }, "Webhook URL saved; Slack notifications are on.");
      }}>
        <div class="form-grid">
          <Field label="Incoming webhook URL" hint="https://hooks.slack.com/services/…: stored on this box, never shown back. Saving turns Slack notifications on.">
            {(id, d) => <input id={id} type="password" autoComplete="off" value={url} disabled={!canEdit} aria-describedby={d}
                               placeholder={state.configured ? "(set: type a new one to replace it)" : ""}
                               onInput={(e) => setUrl(e.currentTarget.value)} />}
          </Field>
          <Field label="SlackChannel" hint={channelOk ? props.hints.SlackChannel : "Letters, digits, . _ - (up to 80), optionally after # or @."}>
            {(id, d) => <input id={id} value={channel} disabled={!canEdit} aria-describedby={d} aria-invalid={!channelOk}
                               onInput={(e) => setChannel(e.currentTarget.value)} />}
          </Field>
        </div>
        <div class="form-actions">
          <button type="submit" class="btn primary" disabled={!canEdit || url.trim().length < 8 || !channelOk}>Save webhook URL</button>
          <ActionButton disabled={!canEdit || !channelOk || channel.trim() === state.channel}
                        onError={setError}
                        onClick={() => run(() => channel.trim()
                          ? api.post("/slack/add-channel", { channel: channel.trim() })
                          : api.put("/app", { SlackChannel: "" }), "Slack channel saved.")}>
            Save channel
          </ActionButton>
        </div>
      </form>
      <div class="form-actions">
        <ActionButton kind="primary" disabled={!canEdit || !state.configured} describedBy={!state.configured && canEdit ? "notify-slack-why" : undefined}
                      onError={(e) => { setTest(null); setTestError(e); }}
                      onClick={async () => {
                        setTest(null);
                        setTestError(undefined);
                        setTest(await api.post<TestResult>("/slack/test"));
                      }}>
          Send a test to Slack
        </ActionButton>
        <ActionButton disabled={!canEdit || (!props.on && !state.configured)} describedBy="notify-slack-onoff"
                      label={`${props.on ? "Turn off" : "Turn on"} Slack notifications`}
                      onError={setError}
                      onClick={() => run(() => api.put("/app", { EnableSlackNotifications: props.on ? "False" : "True" }),
                                         `Slack notifications turned ${props.on ? "off" : "on"}.`)}>
          {props.on ? "Turn off" : "Turn on"}
        </ActionButton>
        <ActionButton kind="danger" disabled={!canEdit || !state.configured}
                      confirm="Forget the Slack webhook URL and turn Slack notifications off?"
                      onError={setError}
                      onClick={() => run(() => api.put("/slack/revoke"), "Webhook URL forgotten; Slack notifications are off.")}>
          Revoke Slack
        </ActionButton>
      </div>
      {!state.configured && canEdit ? <p id="notify-slack-why" class="hint test-why">Save a webhook URL first.</p> : null}
      <p id="notify-slack-onoff" class="hint">EnableSlackNotifications: {props.hints.EnableSlackNotifications}</p>
      <TestAnswer id="notify-slack-test" result={test} error={testError} />
      <ErrorMessage error={error} />
      {notice ? <Notice>{notice}</Notice> : null}
    </article>
  );
}

function EmailCard(props: { canEdit: boolean; status?: ChannelStatus }) {
  const [to, setTo] = useState("");
  const [test, setTest] = useState<TestResult | null>(null);
  const [testError, setTestError] = useState<unknown>(undefined);
  const st = props.status;
  return (
    <article class="card part-card" aria-labelledby="notify-email">
      <div class="part-head">
        <h3 id="notify-email">E-mail <span class="part-section">SMTP server from the environment (LOOKOUT_SMTP_*)</span></h3>
      </div>
      <ChannelFacts st={st} where={st?.server ?? ""} />
      {st?.config_error ? <p class="hint">{st.config_error}</p> : null}
      <form class="part-keys" onSubmit={(e) => e.preventDefault()}>
        <div class="form-grid">
          <Field label="Send a test e-mail to" hint="An address; empty sends to GlobalReportingEmails.">
            {(id, d) => <input id={id} type="email" autoComplete="email" value={to} disabled={!props.canEdit} aria-describedby={d}
                               onInput={(e) => setTo(e.currentTarget.value)} />}
          </Field>
        </div>
        <div class="form-actions">
          <ActionButton kind="primary" disabled={!props.canEdit}
                        onError={(e) => { setTest(null); setTestError(e); }}
                        onClick={async () => {
                          setTest(null);
                          setTestError(undefined);
                          const addr = to.trim();
                          setTest(await api.post<TestResult>("/notifications/email/test", { to: addr ? [addr] : [] }));
                        }}>
            Send a test e-mail
          </ActionButton>
        </div>
      </form>
      <TestAnswer id="notify-email-test" result={test} error={testError} />
    </article>
  );
}

function AppKeysCard(props: { values: Record<string, string>; hints: Record<string, string>; canEdit: boolean; onSaved: () => void }) {
  const { canEdit } = props;
  const initial = Object.fromEntries(APP_KEYS.map((k) => [k, props.values[k] ?? ""]));
  const [values, setValues] = useState<Record<string, string>>(initial);
  const [error, setError] = useState<unknown>(undefined);
  const [notice, setNotice] = useState<string | null>(null);
  useEffect(() => setValues(Object.fromEntries(APP_KEYS.map((k) => [k, props.values[k] ?? ""]))), [props.values]);
  const changed = Object.fromEntries(APP_KEYS.filter((k) => values[k] !== initial[k]).map((k) => [k, values[k]]));
  const dirty = Object.keys(changed).length > 0;
  const hint = (k: string) => props.hints[k] || undefined;
  return (
    <article class="card part-card" aria-labelledby="notify-app">
      <div class="part-head">
        <h3 id="notify-app">Alerts and global reports <span class="part-section">[App]</span></h3>
      </div>
      <form class="app-keys" onSubmit={async (e) => {
        e.preventDefault();
        if (!dirty) return;
        setError(undefined);
        setNotice(null);
        try {
          await api.put("/app", changed);
          setNotice("Notification settings saved.");
          props.onSaved();
        } catch (err) {
          setError(err);
        }
      }}>
        <div class="form-grid">
          {APP_KEYS.filter((k) => !BOOLEAN_KEYS.has(k)).map((k) => (
            <Field key={k} label={k} hint={hint(k)}>
              {(id, d) => <input id={id} value={values[k]} disabled={!canEdit} aria-describedby={d}
                                 placeholder={k === "GlobalReportTime" ? "HH:MM" : undefined}
                                 onInput={(e) => setValues({ ...values, [k]: e.currentTarget.value })} />}
            </Field>
          ))}
        </div>
        <div class="checks">
          {APP_KEYS.filter((k) => BOOLEAN_KEYS.has(k)).map((k) => (
            <CheckField key={k} label={k} hint={hint(k)} checked={isTrue(values[k])} disabled={!canEdit}
                        onChange={(v) => setValues({ ...values, [k]: v ? "True" : "False" })} />
          ))}
        </div>
        <ErrorMessage error={error} />
        {notice ? <Notice>{notice}</Notice> : null}
        <div class="form-actions">
          <button type="submit" class="btn primary" disabled={!canEdit || !dirty}>Save notification settings</button>
          <button type="button" class="btn plain" disabled={!dirty} onClick={() => setValues(initial)}>Undo changes</button>
        </div>
      </form>
    </article>
  );
}
