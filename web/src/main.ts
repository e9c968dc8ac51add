// The console's shell: reads /config.json, keeps the session, and shows one page at a time by the
// URL's hash (#/network, #/wallet...), so each page has an address of its own.
import "uplot/dist/uPlot.min.css";
import "./style.css";

import { Api } from "./api";
import type { App, Page, Tone } from "./app";
import { loadConfig, type ConsoleConfig } from "./config";
import { alert, button, h, messageOf, status } from "./dom";
import { chatPage } from "./pages/chat";
import { keysPage } from "./pages/keys";
import { minerPage } from "./pages/miner";
import { networkPage } from "./pages/network";
import { signInPage } from "./pages/signin";
import { walletPage } from "./pages/wallet";
import { clearSession, loadSession, saveSession, type Session } from "./session";

interface Route {
  title: string;
  page: Page;
  signedIn: boolean; // shown only to a signed-in wallet
}

const ROUTES: Record<string, Route> = {
  network: { title: "Network", page: networkPage, signedIn: false },
  wallet: { title: "Wallet", page: walletPage, signedIn: true },
  miner: { title: "Mining", page: minerPage, signedIn: true },
  keys: { title: "API keys", page: keysPage, signedIn: true },
  chat: { title: "Chat", page: chatPage, signedIn: true },
  signin: { title: "Sign in", page: signInPage, signedIn: false },
};

const root = document.getElementById("page")!;
// Said once on the next page shown (why the user was signed out).
let notice: { text: string; tone: Tone } | null = null;

function routeName(): string {
  const name = location.hash.replace(/^#\/?/, "");
  return name in ROUTES ? name : "network";
}

function drawChrome(app: App, current: string): void {
  const session = app.session();
  const links = Object.entries(ROUTES)
    .filter(([name, route]) => name !== "signin" && (!route.signedIn || session !== null))
    .map(([name, route]) => {
      const attributes: Record<string, string> = { href: `#/${name}` };
      if (name === current) attributes["aria-current"] = "page";
      return h("a", attributes, route.title);
    });
  document.getElementById("nav")!.replaceChildren(...links);
  const who = document.getElementById("who")!;
  if (session === null) {
    who.replaceChildren(h("a", { href: "#/signin" }, "Sign in"));
  } else {
    const out = button("Sign out", () => void app.leave());
    who.replaceChildren(h("span", { class: "wallet" }, session.wallet), " ", out);
  }
}

async function show(app: App): Promise<void> {
  const name = routeName();
  const route = ROUTES[name]!;
  delete root.dataset["page"];
  if (route.signedIn && app.session() === null) {
    notice ??= { text: "Sign in to see this page.", tone: "status" };
    location.hash = "#/signin";
    return;
  }
  document.title = `${route.title} · R3MES console`;
  drawChrome(app, name);
  const page = h("section", { "aria-busy": "true" });
  const told = notice === null ? [] : [(notice.tone === "alert" ? alert : status)(notice.text)];
  root.replaceChildren(...told, page);
  notice = null;
  try {
    await route.page(app, page);
  } catch (error) {
    page.append(alert(messageOf(error)));
  }
  page.setAttribute("aria-busy", "false");
  root.dataset["page"] = name; // the page is drawn: the tests wait for this
}

function start(config: ConsoleConfig): void {
  let session: Session | null = loadSession();
  const app: App = {
    config,
    api: new Api(
      config.gateway_url,
      () => session?.key ?? null,
      (error) => app.signOut(error.message),
    ),
    session: () => session,
    signIn(next) {
      session = next;
      saveSession(next);
    },
    signOut(why, tone = "alert") {
      session = null;
      clearSession();
      notice = { text: why, tone };
      if (routeName() === "signin") void show(app);
      else location.hash = "#/signin";
    },
    async leave() {
      const made = session?.madeKeyId;
      if (session === null || made === undefined) return app.signOut("You signed out.", "status");
      try {
        await app.api.post(`/v1/wallets/${session.wallet}/apikeys/${made}:revoke`, {});
        app.signOut("You signed out, and the console's key was revoked.", "status");
      } catch (error) {
        const why = messageOf(error);
        app.signOut(`You signed out, but the console's key could not be revoked: ${why}`);
      }
    },
  };
  window.addEventListener("hashchange", () => void show(app));
  void show(app);
}

loadConfig().then(start, (error: unknown) => {
  root.replaceChildren(alert(messageOf(error)));
});
