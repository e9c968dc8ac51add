// Amounts are integer micro-credits on the wire (int64 as a JSON string): shown exactly, with
// BigInt, never through a float.

const MICRO_PER_CREDIT = 1_000_000n;

/** "1234567" -> "1.234567 credits". */
export function credits(micro: string | bigint): string {
  const value = BigInt(micro);
  const sign = value < 0n ? "-" : "";
  const magnitude = value < 0n ? -value : value;
  const whole = magnitude / MICRO_PER_CREDIT;
  const fraction = (magnitude % MICRO_PER_CREDIT).toString().padStart(6, "0");
  return `${sign}${whole.toLocaleString("en-US")}.${fraction} credits`;
}

/** An element-ready amount: the text for people and the exact figure for machines. */
export function amount(micro: string | bigint): HTMLElement {
  const element = document.createElement("span");
  element.className = "amount";
  element.dataset["microCredits"] = BigInt(micro).toString();
  element.textContent = credits(micro);
  return element;
}

/** Counters (int64 strings) with thousands separators. */
export function count(value: string | undefined): string {
  return BigInt(value ?? "0").toLocaleString("en-US");
}

/** An RFC 3339 time as the reader's local date and time; "" for none. */
export function when(time: string | undefined): string {
  return time
    ? new Date(time).toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short" })
    : "";
}
