// The network at a glance: public figures, no sign-in needed.
import type { Page } from "../app";
import { h } from "../dom";
import { amount, count } from "../format";
import type { NetworkStats } from "../types";

export function figures(rows: [string, Node | string][]): HTMLDListElement {
  return h(
    "dl",
    { class: "figures" },
    ...rows.flatMap(([name, value]) => [h("dt", {}, name), h("dd", {}, value)]),
  );
}

export const networkPage: Page = async (app, root) => {
  root.append(h("h1", {}, "Network"));
  const stats = await app.api.get<NetworkStats>("/v1/network/stats");
  root.append(
    figures([
      ["Wallets", count(stats.total_users)],
      ["Active miners", count(stats.active_miners)],
      ["Credits held", amount(stats.total_micro_credits)],
      ["Block height", count(stats.block_height)],
    ]),
  );
};
