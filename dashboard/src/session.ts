// Who is signed in, shared by every page.
import { createContext } from "preact";
import { useContext } from "preact/hooks";

export type Role = "admin" | "viewer";
export interface SessionUser {
  username: string;
  role: Role;
  expires_in?: number;
}

export interface Session {
  user: SessionUser | null;
  /** True for admins: change controls are enabled only then. */
  canEdit: boolean;
  signedIn(user: SessionUser): void;
  signOut(): Promise<void>;
}

export const SessionContext = createContext<Session>({
  user: null,
  canEdit: false,
  signedIn: () => {},
  signOut: async () => {},
});

export function useSession(): Session {
  return useContext(SessionContext);
}
