// The dashboard: sign-in, then a page per hash route inside one layout.
import "./styles.css";

import { render } from "preact";
import { useEffect, useMemo, useState } from "preact/hooks";

import { api, setUnauthorizedHandler } from "./api";
import { Loading } from "./components/ui";
import { routes, NAV } from "./pages";
import { href, navigate, useRoute } from "./router";
import { type Session, SessionContext, type SessionUser } from "./session";

const RENEW_EVERY_MS = 5 * 60 * 1000;

function Layout(props: { route: string[]; session: Session; children: preact.ComponentChildren }) {
  const [menuOpen, setMenuOpen] = useState(false);
  const top = props.route[0] ?? "cameras";
  useEffect(() => setMenuOpen(false), [props.route.join("/")]);
  return (
    <>
      <a class="skip-link" href="#main" onClick={(e) => {
        e.preventDefault();
        document.getElementById("main")?.focus();
      }}>Skip to content</a>
      <header class="top">
        <a class="brand" href={href("cameras")}>Lookout</a>
        <button type="button" class="btn plain menu-toggle" aria-expanded={menuOpen}
                aria-controls="main-nav" onClick={() => setMenuOpen(!menuOpen)}>Menu</button>
        <nav id="main-nav" aria-label="Main" class={menuOpen ? "open" : ""}>
          <ul>
            {NAV.filter((n) => !n.adminOnly || props.session.canEdit).map((n) => (
              <li key={n.route}>
                <a href={href(n.route)} aria-current={top === n.route ? "page" : undefined}>{n.label}</a>
              </li>
            ))}
          </ul>
        </nav>
        <div class="who">
          <span>{props.session.user?.username} <span class="role">({props.session.user?.role})</span></span>
          <button type="button" class="btn plain" onClick={() => props.session.signOut()}>Sign out</button>
        </div>
      </header>
      <main id="main" tabIndex={-1}>{props.children}</main>
    </>
  );
}

function App() {
  const route = useRoute();
  const [user, setUser] = useState<SessionUser | null | undefined>(undefined);

  useEffect(() => {
    setUnauthorizedHandler(() => setUser(null));
    api.get<SessionUser>("/auth/session").then(setUser).catch(() => setUser(null));
  }, []);

  // Sliding session: renew the cookie while the page is open.
  useEffect(() => {
    if (!user) return;
    const t = window.setInterval(() => {
      api.put<SessionUser>("/auth/session").catch(() => setUser(null));
    }, RENEW_EVERY_MS);
    return () => window.clearInterval(t);
  }, [user?.username]);

  const session = useMemo<Session>(() => ({
    user: user ?? null,
    canEdit: user?.role === "admin",
    signedIn: (u) => {
      setUser(u);
      if (currentTop() === "login") navigate("cameras");
    },
    signOut: async () => {
      try { await api.del("/auth/session"); } catch { /* already gone */ }
      setUser(null);
      navigate("login");
    },
  }), [user]);

  if (user === undefined) return <main id="main"><Loading /></main>;
  const Login = routes.login;
  if (user === null) {
    return (
      <SessionContext.Provider value={session}>
        <main id="main" class="login-main"><Login route={route} /></main>
      </SessionContext.Provider>
    );
  }
  const top = route[0] && route[0] !== "login" ? route[0] : "cameras";
  const Page = routes[top] ?? routes.notfound;
  return (
    <SessionContext.Provider value={session}>
      <Layout route={route} session={session}>
        <Page route={route[0] === top ? route : [top]} />
      </Layout>
    </SessionContext.Provider>
  );
}

function currentTop(): string {
  return window.location.hash.replace(/^#\/?/, "").split(/[/?]/)[0];
}

render(<App />, document.getElementById("app")!);
