// The signed-in wallet as a miner: its figures, and what it earned and its hashrate per day over
// 7, 30 or 365 days.
import type { App, Page } from "../app";
import { COLORS, dailyChart } from "../chart";
import { h, messageOf } from "../dom";
import { amount, count, when } from "../format";
import type { EarningsPoint, HashratePoint, MinerStats } from "../types";
import { figures } from "./network";

const PERIODS = [7, 30, 365] as const;
const MICRO_PER_CREDIT = 1_000_000;

function chartFigure(
  id: string,
  caption: string,
): { figure: HTMLElement; plot: HTMLElement; summary: HTMLElement } {
  const plot = h("div", { class: "plot", id });
  const summary = h("p", { class: "summary" });
  const figure = h("figure", {}, h("figcaption", {}, caption), plot, summary);
  return { figure, plot, summary };
}

async function drawPeriod(
  app: App,
  wallet: string,
  days: number,
  charts: ReturnType<typeof chartFigure>[],
): Promise<void> {
  const [earnings, hashrate] = await Promise.all([
    app.api.get<{ points: EarningsPoint[]; total_earned_micro_credits: string }>(
      `/v1/miners/${wallet}/earnings`,
      { days },
    ),
    app.api.get<{ points: HashratePoint[] }>(`/v1/miners/${wallet}/hashrate`, { days }),
  ]);
  const [earned, rate] = charts as [ReturnType<typeof chartFigure>, ReturnType<typeof chartFigure>];
  // Credits per day as a float is for drawing only; the total below is exact.
  const perDay = earnings.points.map(
    (p) => Number(p.earned_micro_credits ?? "0") / MICRO_PER_CREDIT,
  );
  dailyChart(
    earned.plot,
    "credits",
    earnings.points.map((p) => p.date),
    [{ label: "Earned", color: COLORS.earned, values: perDay }],
  );
  earned.summary.replaceChildren(
    `Earned over the last ${days} days: `,
    amount(earnings.total_earned_micro_credits),
  );
  dailyChart(
    rate.plot,
    "hashes/s",
    hashrate.points.map((p) => p.date),
    [
      {
        label: "Average",
        color: COLORS.average,
        values: hashrate.points.map((p) => p.average_hashrate ?? 0),
      },
      {
        label: "Peak",
        color: COLORS.peak,
        values: hashrate.points.map((p) => p.peak_hashrate ?? 0),
      },
    ],
  );
  const peak = Math.max(0, ...hashrate.points.map((p) => p.peak_hashrate ?? 0));
  rate.summary.textContent = `Highest hashrate over the last ${days} days: ${peak.toLocaleString("en-US")} hashes/s.`;
}

export const minerPage: Page = async (app, root) => {
  const wallet = app.session()!.wallet;
  root.append(h("h1", {}, "Mining"));
  const { stats } = await app.api.get<{ stats: MinerStats }>(`/v1/miners/${wallet}/stats`);
  root.append(
    figures([
      ["Status", stats.active ? "Mining" : "Not mining"],
      ["Hashrate now", `${(stats.current_hashrate ?? 0).toLocaleString("en-US")} hashes/s`],
      ["Earned in all", amount(stats.total_earned_micro_credits)],
      ["Blocks found", count(stats.blocks_found)],
      ["Reports", count(stats.report_count)],
      ["Last report", when(stats.last_report_time) || "never"],
    ]),
  );
  const charts = [
    chartFigure("earnings-chart", "Earnings per day"),
    chartFigure("hashrate-chart", "Hashrate per day"),
  ];
  const choices = PERIODS.map((days) =>
    h(
      "button",
      { type: "button", "aria-pressed": String(days === 7), "data-days": String(days) },
      `${days} days`,
    ),
  );
  const status = h("p", { class: "status", role: "status" });
  for (const choice of choices) {
    choice.addEventListener("click", () => {
      const days = Number(choice.dataset["days"]);
      for (const other of choices) other.setAttribute("aria-pressed", String(other === choice));
      root.dataset["days"] = "";
      drawPeriod(app, wallet, days, charts).then(
        () => (root.dataset["days"] = String(days)),
        (error: unknown) => (status.textContent = messageOf(error)),
      );
    });
  }
  root.append(
    h("div", { class: "periods", role: "group", "aria-label": "Period" }, ...choices),
    status,
    ...charts.map((c) => c.figure),
  );
  await drawPeriod(app, wallet, PERIODS[0], charts);
  root.dataset["days"] = String(PERIODS[0]);
};
