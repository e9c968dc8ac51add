// Calls to the gateway (its URL from /config.json, another origin: CORS), with the session's API
// key, and refusals turned into ApiError sentences (errors.ts).
import { EventSourceParserStream } from "eventsource-parser/stream";

import { ApiError, errorOf } from "./errors";

export type Query = Record<string, string | number>;

export class Api {
  constructor(
    private readonly base: string,
    private readonly key: () => string | null,
    /** Told when the gateway refused the session's key (revoked, expired...). */
    private readonly onSignedOut: (error: ApiError) => void,
  ) {}

  get<T>(path: string, query: Query = {}): Promise<T> {
    const search = new URLSearchParams(Object.entries(query).map(([k, v]) => [k, String(v)]));
    const suffix = search.size > 0 ? `?${search}` : "";
    return this.call<T>("GET", path + suffix);
  }

  post<T>(path: string, body: unknown): Promise<T> {
    return this.call<T>("POST", path, body);
  }

  delete<T>(path: string): Promise<T> {
    return this.call<T>("DELETE", path);
  }

  /** A call with another key than the session's (signing in with a pasted key checks it). */
  async withKey<T>(key: string, path: string): Promise<T> {
    const reply = await fetch(this.base + path, { headers: { "x-api-key": key } });
    return (await this.read(reply, false)) as T;
  }

  /** Server-sent events of a POST (the OpenAI door's streamed chat), each parsed as JSON. */
  async *events(path: string, body: unknown): AsyncGenerator<unknown> {
    const reply = await this.send("POST", path, body);
    if (!reply.ok || reply.body === null) {
      await this.read(reply, true);
      return;
    }
    const events = reply.body
      .pipeThrough(new TextDecoderStream())
      .pipeThrough(new EventSourceParserStream());
    for await (const event of events) {
      if (event.data === "[DONE]") return;
      yield JSON.parse(event.data) as unknown;
    }
  }

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    return (await this.read(await this.send(method, path, body), true)) as T;
  }

  private send(method: string, path: string, body?: unknown): Promise<Response> {
    const headers: Record<string, string> = {};
    const key = this.key();
    if (key !== null) headers["x-api-key"] = key;
    if (body !== undefined) headers["content-type"] = "application/json";
    const init: RequestInit = { method, headers };
    if (body !== undefined) init.body = JSON.stringify(body);
    return fetch(this.base + path, init);
  }

  private async read(reply: Response, sessionKey: boolean): Promise<unknown> {
    const text = await reply.text();
    let body: unknown = null;
    try {
      body = text ? (JSON.parse(text) as unknown) : {};
    } catch {
      body = null; // not JSON: a proxy's page; the status alone is told
    }
    if (reply.ok) return body;
    const error = errorOf(reply.status, body, reply.headers.get("retry-after"));
    if (error.signedOut && sessionKey && this.key() !== null) this.onSignedOut(error);
    throw error;
  }
}

export { ApiError };
