// A chat through the OpenAI-compatible door, streamed: the price is shown before sending (the
// most the message can cost, from /config.json's prices), the exact charge after it.
import type { App, Page } from "../app";
import { mostItCosts, priceOf } from "../config";
import { alert, field, h, messageOf } from "../dom";
import { errorOf } from "../errors";
import { amount } from "../format";
import { balanceOf } from "./wallet";

interface Message {
  role: "user" | "assistant";
  content: string;
}

interface Chunk {
  choices?: { delta?: { content?: string } }[];
  usage?: {
    prompt_tokens: number;
    completion_tokens: number;
    charged_micro_credits: number;
  } | null;
  error?: unknown;
}

const DEFAULT_MAX_TOKENS = 32;

async function drawBalance(app: App, place: HTMLElement): Promise<void> {
  const balance = await balanceOf(app.api, app.session()!.wallet);
  place.replaceChildren("Available: ", amount(balance.available_micro_credits));
}

export const chatPage: Page = async (app, root) => {
  root.append(h("h1", {}, "Chat"));
  const balance = h("p", { class: "balance", id: "chat-balance" });
  const { data: models } = await app.api.get<{ data: { id: string }[] }>("/v1/models");
  await drawBalance(app, balance);
  root.append(balance);
  if (models.length === 0) {
    root.append(h("p", {}, "No model is being served right now: try again later."));
    return;
  }
  const history: Message[] = [];
  const model = h(
    "select",
    { name: "model" },
    ...models.map((m) => h("option", { value: m.id }, m.id)),
  );
  const maxTokens = h("input", {
    name: "max_tokens",
    type: "number",
    min: "1",
    max: "4096",
    value: String(DEFAULT_MAX_TOKENS),
  });
  const text = h("textarea", { name: "message", rows: "3", required: "" });
  const price = h("p", { class: "price", id: "chat-price", "aria-live": "polite" });
  const send = h("button", { type: "submit" }, "Send");
  const log = h("ol", {
    class: "conversation",
    "aria-label": "Conversation",
    "aria-live": "polite",
  });
  const outcome = h("div", { class: "outcome" });
  const form = h(
    "form",
    { "aria-label": "New message" },
    field("Model", model),
    field("Longest answer (tokens)", maxTokens),
    field("Message", text),
    price,
    send,
  );

  const drawPrice = () => {
    const unit = priceOf(app.config, model.value);
    const most = mostItCosts(
      unit,
      [...history.map((m) => m.content), text.value],
      Number(maxTokens.value) || 0,
    );
    price.replaceChildren(
      `Price: ${unit.prompt} micro-credits per prompt token, ${unit.completion} per answer token. This message costs at most `,
      amount(most),
      " (held until the answer ends; only what is used is charged).",
    );
  };
  for (const input of [model, maxTokens, text]) input.addEventListener("input", drawPrice);
  drawPrice();

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!text.value.trim()) return;
    const asked: Message = { role: "user", content: text.value };
    const answer = h("p", { class: "answer" });
    log.append(h("li", { class: "user" }, asked.content), h("li", { class: "assistant" }, answer));
    outcome.replaceChildren();
    send.disabled = true;
    const body = {
      model: model.value,
      messages: [...history, asked],
      max_tokens: Number(maxTokens.value),
      stream: true,
      stream_options: { include_usage: true },
    };
    void (async () => {
      try {
        for await (const event of app.api.events("/v1/chat/completions", body)) {
          const chunk = event as Chunk;
          if (chunk.error !== undefined) throw errorOf(502, chunk, null);
          answer.append(chunk.choices?.[0]?.delta?.content ?? "");
          if (chunk.usage) {
            const {
              prompt_tokens: p,
              completion_tokens: c,
              charged_micro_credits: charged,
            } = chunk.usage;
            outcome.replaceChildren(
              h(
                "p",
                { class: "charge", id: "chat-charge" },
                "Charged exactly ",
                amount(BigInt(charged)),
                ` for ${p} prompt and ${c} answer tokens.`,
              ),
            );
          }
        }
        history.push(asked, { role: "assistant", content: answer.textContent ?? "" });
        text.value = "";
        drawPrice();
        await drawBalance(app, balance);
        root.dataset["answered"] = String(history.length / 2);
      } catch (error) {
        log.lastElementChild?.remove();
        log.lastElementChild?.remove();
        outcome.replaceChildren(alert(messageOf(error)));
      } finally {
        send.disabled = false;
      }
    })();
  });
  root.append(log, form, outcome);
};
