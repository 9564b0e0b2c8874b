// #/users (admins): list users, create one, change a role or password, delete.
import "./manage.css";

import { useState } from "preact/hooks";

import { api, ApiError } from "../api";
import { ActionButton, ErrorMessage, Field, Loading, Notice, PageHeader, ReadOnlyNote, useAsync } from "../components/ui";
import { useSession } from "../session";
import { formatTime } from "./cameraCommon";
import type { PageProps } from ".";

interface User { username: string; role: "admin" | "viewer"; created: string }

const ROLES: { value: string; label: string }[] = [
  { value: "viewer", label: "Viewer (read only)" },
  { value: "admin", label: "Admin (changes anything)" },
];
const MIN_PASSWORD = 8;

export function UsersPage(_props: PageProps) {
  const session = useSession();
  const { canEdit } = session;
  const users = useAsync((signal) => (canEdit ? api.get<User[]>("/auth/users", signal) : Promise.resolve(null)),
                         [canEdit]);
  const [notice, setNotice] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(undefined);

  if (!canEdit) {
    return (
      <section class="users-page">
        <PageHeader title="Users" />
        <ReadOnlyNote />
        <p>Only admins see and manage the users. You are signed in as <strong>{session.user?.username}</strong>.</p>
      </section>
    );
  }
  const done = (text: string) => {
    setError(undefined);
    setNotice(text);
    users.reload();
  };
  const failed = (e: unknown) => {
    setNotice(null);
    setError(e);
  };

  return (
    <section class="users-page">
      <PageHeader title="Users" />
      {notice ? <Notice>{notice}</Notice> : null}
      <ErrorMessage error={error} />
      {users.data ? (
        <div class="table-wrap card">
          <table class="users-table">
            <caption class="visually-hidden">Users who can sign in</caption>
            <thead>
              <tr><th scope="col">User</th><th scope="col">Role</th><th scope="col">Created</th><th scope="col">Change</th></tr>
            </thead>
            <tbody>
              {users.data.map((u) => (
                <UserRow key={u.username} user={u} self={u.username === session.user?.username}
                         onDone={done} onError={failed} />
              ))}
            </tbody>
          </table>
        </div>
      ) : users.error ? <ErrorMessage error={users.error} /> : <Loading what="users" />}
      <CreateUser onCreated={(u) => done(`User ${u.username} created (${u.role}).`)} />
    </section>
  );
}

function UserRow(props: { user: User; self: boolean; onDone: (text: string) => void; onError: (e: unknown) => void }) {
  const u = props.user;
  const [role, setRole] = useState<string>(u.role);
  const [pwOpen, setPwOpen] = useState(false);
  const [password, setPassword] = useState("");
  const path = `/auth/users/${encodeURIComponent(u.username)}`;
  const pwId = `pw-${u.username}`;
  return (
    <tr>
      <th scope="row">{u.username}{props.self ? <span class="hint"> (you)</span> : null}</th>
      <td>
        <div class="inline-edit">
          <select aria-label={`Role of ${u.username}`} value={role} onChange={(e) => setRole(e.currentTarget.value)}>
            <option value="viewer">viewer</option>
            <option value="admin">admin</option>
          </select>
          <ActionButton disabled={role === u.role} label={`Save role of ${u.username}`} onError={props.onError}
                        onClick={async () => {
                          await api.put(path, { role });
                          props.onDone(`${u.username} is now ${role === "admin" ? "an admin" : "a viewer"}.`);
                        }}>
            Save role
          </ActionButton>
        </div>
      </td>
      <td data-label="Created">{formatTime(u.created)}</td>
      <td>
        <div class="inline-edit">
          <button type="button" class="btn plain" aria-expanded={pwOpen} aria-controls={pwId}
                  aria-label={`Change password of ${u.username}`} onClick={() => setPwOpen(!pwOpen)}>
            Change password
          </button>
          <ActionButton kind="danger" disabled={props.self} label={`Delete user ${u.username}`}
                        confirm={`Delete user ${u.username}? They can no longer sign in.`} onError={props.onError}
                        onClick={async () => {
                          await api.del(path);
                          props.onDone(`User ${u.username} deleted.`);
                        }}>
            Delete
          </ActionButton>
        </div>
        {pwOpen ? (
          <form id={pwId} class="inline-edit password-form" onSubmit={async (e) => {
            e.preventDefault();
            try {
              await api.put(path, { password });
              setPassword("");
              setPwOpen(false);
              props.onDone(`Password of ${u.username} changed; their other sessions end.`);
            } catch (err) {
              props.onError(err);
            }
          }}>
            <input type="password" aria-label={`New password for ${u.username}`} autoComplete="new-password"
                   minLength={MIN_PASSWORD} required value={password} placeholder="New password"
                   onInput={(e) => setPassword(e.currentTarget.value)} />
            <button type="submit" class="btn primary" disabled={password.length < MIN_PASSWORD}>Set password</button>
          </form>
        ) : null}
      </td>
    </tr>
  );
}

function CreateUser(props: { onCreated: (u: User) => void }) {
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [role, setRole] = useState("viewer");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(undefined);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      const u = await api.post<User>("/auth/users", { username: username.trim(), password, role });
      setUsername("");
      setPassword("");
      setRole("viewer");
      props.onCreated(u);
    } catch (err) {
      setError(err instanceof ApiError && err.status === 422 ? new Error(err.detail) : err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <section class="card create-user" aria-labelledby="create-user-title">
      <h2 id="create-user-title">Create a user</h2>
      <form onSubmit={submit}>
        <div class="row">
          <Field label="New user name">
            {(id) => <input id={id} name="new-username" autoComplete="off" required maxLength={64} value={username}
                            onInput={(e) => setUsername(e.currentTarget.value)} />}
          </Field>
          <Field label="New user password" hint={`At least ${MIN_PASSWORD} characters.`}>
            {(id, d) => <input id={id} name="new-password" type="password" autoComplete="new-password" required
                               minLength={MIN_PASSWORD} aria-describedby={d} value={password}
                               onInput={(e) => setPassword(e.currentTarget.value)} />}
          </Field>
          <Field label="Role" hint="A viewer sees everything and changes nothing; an admin changes settings and users.">
            {(id, hint) => (
              <select id={id} value={role} aria-describedby={hint} onChange={(e) => setRole(e.currentTarget.value)}>
                {ROLES.map((r) => <option key={r.value} value={r.value}>{r.label}</option>)}
              </select>
            )}
          </Field>
        </div>
        <ErrorMessage error={error} />
        <button type="submit" class="btn primary" disabled={busy || !username.trim() || password.length < MIN_PASSWORD}>
          {busy ? "Creating…" : "Create user"}
        </button>
      </form>
    </section>
  );
}
