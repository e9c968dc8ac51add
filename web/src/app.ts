// What every page is given: the configuration, the gateway client, who is signed in, and how to
// move between pages.
import type { Api } from "./api";
import type { ConsoleConfig } from "./config";
import type { Session } from "./session";

export type Tone = "alert" | "status";

export interface App {
  readonly config: ConsoleConfig;
  readonly api: Api;
  session(): Session | null;
  signIn(session: Session): void;
  /** Forget the session and show the sign-in page, saying why (an alert, or a plain status
   * when nothing went wrong). */
  signOut(why: string, tone?: Tone): void;
  /** The user signs out: the key the console made is revoked first. */
  leave(): Promise<void>;
}

/** A page draws itself into `root`; it may call the gateway first. */
export type Page = (app: App, root: HTMLElement) => Promise<void>;
