// Who is signed in: the wallet and the API key the console calls with. Kept in sessionStorage, so
// a key is pasted (or signed for) once per tab and survives a reload, but is forgotten when the
// tab closes; never in localStorage, where it would outlive the visit.

export interface Session {
  wallet: string;
  key: string;
  /** Set when the console made the key (signing in with Keplr): signing out revokes it. */
  madeKeyId?: string;
}

const STORAGE_KEY = "r3mes.console.session";

export function loadSession(): Session | null {
  const stored = sessionStorage.getItem(STORAGE_KEY);
  if (stored === null) return null;
  const value = JSON.parse(stored) as Partial<Session>;
  if (typeof value.wallet !== "string" || typeof value.key !== "string") return null;
  const session: Session = { wallet: value.wallet, key: value.key };
  if (typeof value.madeKeyId === "string") session.madeKeyId = value.madeKeyId;
  return session;
}

export function saveSession(session: Session): void {
  sessionStorage.setItem(STORAGE_KEY, JSON.stringify(session));
}

export function clearSession(): void {
  sessionStorage.removeItem(STORAGE_KEY);
}

/** Whether a key's hint (`r3mes_AbCd...WxYz`, as ListAPIKeys shows it) is this secret's. */
export function isHintOf(hint: string, secret: string): boolean {
  const [head, tail] = hint.split("...");
  return (
    head !== undefined && tail !== undefined && secret.startsWith(head) && secret.endsWith(tail)
  );
}
