// Refusals as sentences a person can act on. The gateway answers with a google.rpc.Status as JSON
// ({code, message, details}); the OpenAI-compatible door with {error: {message, code}}. Both name
// a stable reason, which decides the sentence; the message fills in what only it knows.

interface Detail {
  "@type"?: string;
  reason?: string;
  retry_delay?: string;
  field_violations?: { field?: string; description?: string }[];
}

interface Status {
  code?: number;
  message?: string;
  details?: Detail[];
  error?: { message?: string; code?: string | null };
}

// Refusals of the credential itself: the console's key no longer opens anything.
const SIGNED_OUT: Record<string, string> = {
  API_KEY_REVOKED: "This API key has been revoked. Sign in again to get a new one.",
  API_KEY_EXPIRED: "This API key has expired. Sign in again to get a new one.",
  API_KEY_INVALID: "This API key is not valid. Check it, or sign in with your wallet.",
  CREDENTIALS_MISSING: "Sign in first: this needs your wallet's API key.",
};

// Refusals that pass with time (a limit's bucket refills); other 429s are quotas, told as they are.
const RATE_LIMITED = new Set(["RATE_LIMITED", "RATE_LIMITER_UNAVAILABLE", ""]);

// The OpenAI door's names for two reasons (gateway/frontdoor/openai_door.py).
const DOOR_REASONS: Record<string, string> = {
  INVALID_API_KEY: "API_KEY_INVALID",
  MODEL_NOT_FOUND: "MODEL_NOT_SERVED",
};

export class ApiError extends Error {
  constructor(
    readonly httpStatus: number,
    readonly reason: string,
    sentence: string,
    /** The key was refused: the user must sign in again. */
    readonly signedOut: boolean,
  ) {
    super(sentence);
  }
}

/** "the API key is not valid" -> "The API key is not valid." */
export function sentence(text: string): string {
  const trimmed = text.trim();
  if (!trimmed) return "";
  const capital = trimmed[0]!.toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
}

function seconds(delay: string | undefined, retryAfter: string | null): number | null {
  const fromDetail = delay ? Number.parseFloat(delay) : Number.NaN; // "1.5s"
  if (Number.isFinite(fromDetail)) return Math.max(1, Math.ceil(fromDetail));
  const fromHeader = retryAfter ? Number.parseInt(retryAfter, 10) : Number.NaN;
  return Number.isFinite(fromHeader) ? Math.max(1, fromHeader) : null;
}

function retrySentence(wait: number | null): string {
  if (wait === null) return "Too many requests: wait a moment, then try again.";
  return `Too many requests: try again in ${wait} second${wait === 1 ? "" : "s"}.`;
}

/** The refusal of an HTTP call as an ApiError with a sentence. */
export function errorOf(httpStatus: number, body: unknown, retryAfter: string | null): ApiError {
  const status = (typeof body === "object" && body !== null ? body : {}) as Status;
  const details = status.details ?? [];
  const doorCode = status.error?.code?.toUpperCase() ?? "";
  const reason = details.find((d) => d.reason)?.reason ?? DOOR_REASONS[doorCode] ?? doorCode;
  const message = status.message ?? status.error?.message ?? "";
  if (SIGNED_OUT[reason] !== undefined) {
    return new ApiError(httpStatus, reason, SIGNED_OUT[reason]!, true);
  }
  if (httpStatus === 429 && RATE_LIMITED.has(reason)) {
    const delay = details.find((d) => d.retry_delay)?.retry_delay;
    return new ApiError(httpStatus, reason, retrySentence(seconds(delay, retryAfter)), false);
  }
  const violations = details.flatMap((d) => d.field_violations ?? []);
  if (violations.length > 0) {
    const parts = violations.map(
      (v) => `${v.field ?? "a field"} ${v.description ?? "is not valid"}`,
    );
    return new ApiError(httpStatus, reason, sentence(`Please check: ${parts.join("; ")}`), false);
  }
  return new ApiError(httpStatus, reason, describe(httpStatus, reason, message), false);
}

function describe(httpStatus: number, reason: string, message: string): string {
  switch (reason) {
    case "INSUFFICIENT_CREDITS":
      return sentence(`Not enough credits: ${message}`);
    case "API_KEY_LIMIT_REACHED":
      return sentence(`${message}: the API keys page lists them`);
    case "WRONG_WALLET":
      return "This API key belongs to another wallet.";
    case "NO_SERVING_NODES":
      return "No serving node can answer right now; nothing was charged. Try again later.";
    default:
      break;
  }
  if (httpStatus === 503) return "The service is unavailable right now; try again in a moment.";
  if (httpStatus >= 500) return sentence(message || `The server failed (HTTP ${httpStatus})`);
  return sentence(message || `The request was refused (HTTP ${httpStatus})`);
}
