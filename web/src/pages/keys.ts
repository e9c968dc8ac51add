// The wallet's API keys: list, create (with the console's key or a new Keplr signature), revoke,
// delete. A new key's secret is shown once, with a button that copies it.
import type { App, Page } from "../app";
import { alert, button, field, h, messageOf, table } from "../dom";
import { when } from "../format";
import { keplr, keyFromSignature } from "../keplr";
import { isHintOf } from "../session";
import type { APIKey, CreatedKey } from "../types";

const STATES: Record<string, string> = {
  API_KEY_STATE_ACTIVE: "Active",
  API_KEY_STATE_REVOKED: "Revoked",
  API_KEY_STATE_EXPIRED: "Expired",
};

function secretBox(created: CreatedKey): HTMLElement {
  const status = h("span", { role: "status" });
  const copy = button("Copy", () => {
    navigator.clipboard.writeText(created.secret).then(
      () => (status.textContent = "Copied."),
      () => (status.textContent = "The browser did not allow copying: select the key and copy it."),
    );
  });
  return h(
    "div",
    { class: "secret", "aria-labelledby": "secret-title" },
    h("h2", { id: "secret-title" }, `New key “${created.api_key.name}”`),
    h("p", {}, "Copy this key now: it is shown only this once and cannot be read again."),
    h("p", {}, h("code", { class: "secret-value" }, created.secret), " ", copy, " ", status),
  );
}

async function drawList(app: App, place: HTMLElement, message: HTMLElement): Promise<void> {
  const { wallet, key } = app.session()!;
  const { api_keys: keys } = await app.api.get<{ api_keys: APIKey[] }>(
    `/v1/wallets/${wallet}/apikeys`,
    { page_size: 100 },
  );
  const act = (label: string, run: () => Promise<unknown>) =>
    button(label, () => {
      message.replaceChildren();
      run().then(
        () => drawList(app, place, message),
        (error: unknown) => message.replaceChildren(alert(messageOf(error))),
      );
    });
  const rows = keys.map((k) => {
    const path = `/v1/wallets/${wallet}/apikeys/${k.key_id}`;
    const mine = isHintOf(k.key_prefix, key);
    const actions = h("span", { class: "actions" });
    if (k.state === "API_KEY_STATE_ACTIVE") {
      actions.append(
        act(`Revoke ${k.name}`, () =>
          confirm(`Revoke the key “${k.name}”? It stops working at once.`)
            ? app.api.post(`${path}:revoke`, {})
            : Promise.resolve(),
        ),
      );
    }
    actions.append(
      act(`Delete ${k.name}`, () =>
        confirm(`Delete the key “${k.name}”?`) ? app.api.delete(path) : Promise.resolve(),
      ),
    );
    return [
      h("span", { class: "key-name" }, k.name),
      h("code", {}, k.key_prefix),
      mine ? "in use here" : "",
      STATES[k.state] ?? k.state,
      when(k.create_time),
      when(k.last_used_time) || "never",
      actions,
    ];
  });
  place.replaceChildren(
    table(
      "Keys of this wallet, newest first",
      ["Name", "Key", "", "State", "Created", "Last used", "Actions"],
      rows,
    ),
  );
}

function createForm(
  app: App,
  onCreated: (created: CreatedKey) => void,
  message: HTMLElement,
): HTMLElement {
  const name = h("input", { name: "name", required: "", maxlength: "64", value: "my key" });
  const days = h("input", {
    name: "expires",
    type: "number",
    min: "1",
    max: "365",
    placeholder: "never",
  });
  const done = (created: CreatedKey) => onCreated(created);
  const failed = (error: unknown) => message.replaceChildren(alert(messageOf(error)));
  const withKey = h("button", { type: "submit" }, "Create with the console's key");
  const form = h(
    "form",
    { "aria-labelledby": "create-title" },
    h("h2", { id: "create-title" }, "Create a key"),
    field("Name", name),
    field("Expires after (days)", days),
    withKey,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    message.replaceChildren();
    const body: Record<string, unknown> = { name: name.value };
    if (days.value) body["expires_days"] = Number(days.value);
    app.api
      .post<CreatedKey>(`/v1/wallets/${app.session()!.wallet}/apikeys`, body)
      .then(done, failed);
  });
  if (keplr() !== null) {
    form.append(
      " ",
      button("Create with a Keplr signature", () => {
        message.replaceChildren();
        keyFromSignature(app.api, app.config.keplr_chain_id, name.value).then(done, failed);
      }),
    );
  }
  return form;
}

export const keysPage: Page = async (app, root) => {
  root.append(h("h1", {}, "API keys"));
  const secret = h("div", {});
  const message = h("div", {});
  const list = h("div", {});
  const form = createForm(
    app,
    (created) => {
      secret.replaceChildren(secretBox(created));
      drawList(app, list, message).catch((error: unknown) =>
        message.replaceChildren(alert(messageOf(error))),
      );
    },
    message,
  );
  root.append(secret, form, message, list);
  await drawList(app, list, message);
};
