// What the console learns from the server that serves it (/config.json, written by the front
// door from its settings): where the gateway is, the chain id Keplr is asked for, and the prices
// of chat, so that a message's price is known before it is sent.

export interface Price {
  prompt: number; // micro-credits per prompt token
  completion: number; // micro-credits per completion token
}

export interface ConsoleConfig {
  gateway_url: string;
  keplr_chain_id: string;
  default_price: Price;
  prices: Record<string, Price>;
}

export async function loadConfig(): Promise<ConsoleConfig> {
  const reply = await fetch("/config.json", { cache: "no-store" });
  if (!reply.ok)
    throw new Error(`The console's configuration could not be read (HTTP ${reply.status}).`);
  return (await reply.json()) as ConsoleConfig;
}

export function priceOf(config: ConsoleConfig, model: string): Price {
  return config.prices[model] ?? config.default_price;
}

// The serving service's bound on a prompt: its bytes plus the chat template's tokens per message
// (services/serving/domain.py, prompt_token_bound).
const TEMPLATE_TOKENS_PER_MESSAGE = 8n;

/** The most a chat can cost: what the service reserves before it asks a node. */
export function mostItCosts(price: Price, messages: readonly string[], maxTokens: number): bigint {
  const encoder = new TextEncoder();
  const promptBound = messages.reduce(
    (sum, text) => sum + BigInt(encoder.encode(text).length) + TEMPLATE_TOKENS_PER_MESSAGE,
    0n,
  );
  return BigInt(price.prompt) * promptBound + BigInt(price.completion) * BigInt(maxTokens);
}
