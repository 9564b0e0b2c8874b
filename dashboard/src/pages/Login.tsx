import { useState } from "preact/hooks";

import { api, ApiError } from "../api";
import { ErrorMessage, Field } from "../components/ui";
import { useSession, type SessionUser } from "../session";
import type { PageProps } from ".";

export function LoginPage(_props: PageProps) {
  const session = useSession();
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<unknown>(undefined);
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      const user = await api.post<SessionUser>("/auth/session", { username, password });
      setPassword("");
      session.signedIn(user);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) setError(new Error("Wrong user name or password."));
      else setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section class="login card">
      <h1>Sign in to Lookout</h1>
      <form onSubmit={submit}>
        <Field label="User name">
          {(id) => <input id={id} name="username" autoComplete="username" required value={username}
                          onInput={(e) => setUsername(e.currentTarget.value)} />}
        </Field>
        <Field label="Password">
          {(id) => <input id={id} name="password" type="password" autoComplete="current-password" required
                          value={password} onInput={(e) => setPassword(e.currentTarget.value)} />}
        </Field>
        <ErrorMessage error={error} />
        <button class="btn primary" type="submit" disabled={busy}>{busy ? "Signing in…" : "Sign in"}</button>
      </form>
      <p class="hint">No account yet? On the processor run <code>lookout create-user NAME --role admin</code>.</p>
    </section>
  );
}
