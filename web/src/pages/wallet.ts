// The signed-in wallet's balance and its ledger, newest first, a page at a time.
import type { Api } from "../api";
import type { Page } from "../app";
import { alert, button, h, messageOf, table } from "../dom";
import { amount, when } from "../format";
import type { Balance, LedgerEntry } from "../types";
import { figures } from "./network";

const LEDGER_PAGE_SIZE = 20;
const KINDS: Record<string, string> = {
  LEDGER_ENTRY_KIND_GRANT: "Granted",
  LEDGER_ENTRY_KIND_DEDUCTION: "Deducted",
  LEDGER_ENTRY_KIND_CAPTURE: "Paid",
};

interface LedgerPage {
  ledger_entries: LedgerEntry[];
  next_page_token: string;
}

export async function balanceOf(api: Api, wallet: string): Promise<Balance> {
  const { balance } = await api.get<{ balance: Balance }>(`/v1/wallets/${wallet}/balance`);
  return balance;
}

export const walletPage: Page = async (app, root) => {
  const wallet = app.session()!.wallet;
  root.append(h("h1", {}, "Wallet"), h("p", { class: "wallet" }, wallet));
  const balance = await balanceOf(app.api, wallet);
  root.append(
    h("h2", {}, "Balance"),
    figures([
      ["Available", amount(balance.available_micro_credits)],
      ["Reserved", amount(balance.reserved_micro_credits)],
      ["Total", amount(balance.total_micro_credits)],
    ]),
    h("h2", {}, "Ledger"),
  );
  const rows = (entries: LedgerEntry[]) =>
    entries.map((e) => [
      when(e.create_time),
      KINDS[e.kind] ?? e.kind,
      amount(e.delta_micro_credits),
      amount(e.balance_after_micro_credits),
      e.description,
    ]);
  const path = `/v1/wallets/${wallet}/ledgerEntries`;
  let page = await app.api.get<LedgerPage>(path, { page_size: LEDGER_PAGE_SIZE });
  if (page.ledger_entries.length === 0) {
    root.append(h("p", {}, "No credits have moved in this wallet yet."));
    return;
  }
  const ledger = table(
    "Ledger entries, newest first",
    ["Time", "What", "Change", "Balance after", "Description"],
    rows(page.ledger_entries),
  );
  root.append(ledger);
  const more = button("Show older entries", () => {
    more.disabled = true;
    app.api
      .get<LedgerPage>(path, { page_size: LEDGER_PAGE_SIZE, page_token: page.next_page_token })
      .then((next) => {
        page = next;
        const body = ledger.tBodies[0]!;
        for (const cells of rows(next.ledger_entries))
          body.append(h("tr", {}, ...cells.map((c) => h("td", {}, c))));
        more.disabled = false;
        more.hidden = !next.next_page_token;
      })
      .catch((error: unknown) => {
        more.disabled = false;
        more.after(alert(messageOf(error)));
      });
  });
  more.hidden = !page.next_page_token;
  root.append(more);
};
