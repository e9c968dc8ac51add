// Signing in: with Keplr (a signature makes a new API key), or with an API key pasted once.
import type { App, Page } from "../app";
import { alert, button, field, h, messageOf } from "../dom";
import { keplr, keyFromSignature } from "../keplr";
import type { APIKey } from "../types";

const CONSOLE_KEY_NAME = "console";

function failed(root: HTMLElement, error: unknown): void {
  root.querySelector(".error")?.remove();
  root.append(alert(messageOf(error)));
}

function withKeplr(app: App, root: HTMLElement): HTMLElement {
  if (keplr() === null) {
    return h(
      "p",
      {},
      "Keplr is not installed in this browser: install its extension to sign in with your wallet, or use an API key below.",
    );
  }
  const signIn = button("Sign in with Keplr", () => {
    signIn.disabled = true;
    keyFromSignature(app.api, app.config.keplr_chain_id, CONSOLE_KEY_NAME).then(
      (created) => {
        const { wallet_address: wallet, key_id: madeKeyId } = created.api_key;
        app.signIn({ wallet, key: created.secret, madeKeyId });
        location.hash = "#/wallet";
      },
      (error: unknown) => {
        signIn.disabled = false;
        failed(root, error);
      },
    );
  });
  return h(
    "section",
    { "aria-labelledby": "with-keplr" },
    h("h2", { id: "with-keplr" }, "With Keplr"),
    h(
      "p",
      {},
      "Keplr signs a one-time challenge; the console gets an API key of your wallet for this tab, revoked when you sign out.",
    ),
    signIn,
  );
}

function withKey(app: App, root: HTMLElement): HTMLElement {
  const wallet = h("input", {
    name: "wallet",
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "remes1...",
  });
  const key = h("input", {
    name: "key",
    type: "password",
    autocomplete: "off",
    placeholder: "r3mes_...",
  });
  const form = h(
    "form",
    { "aria-labelledby": "with-key" },
    h("h2", { id: "with-key" }, "With an API key"),
    field("Wallet address", wallet),
    field("API key", key),
    h("button", { type: "submit" }, "Sign in with this key"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const session = { wallet: wallet.value.trim(), key: key.value.trim() };
    // The key must open its wallet's own key list: a wrong key or wallet is told now.
    const path = `/v1/wallets/${encodeURIComponent(session.wallet)}/apikeys?page_size=1`;
    app.api.withKey<{ api_keys: APIKey[] }>(session.key, path).then(
      () => {
        app.signIn(session);
        location.hash = "#/wallet";
      },
      (error: unknown) => failed(root, error),
    );
  });
  return form;
}

export const signInPage: Page = async (app, root) => {
  root.append(h("h1", {}, "Sign in"));
  if (app.session() !== null)
    root.append(h("p", {}, "You are signed in; signing in again replaces this tab's key."));
  root.append(withKeplr(app, root), withKey(app, root));
};
