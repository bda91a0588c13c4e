import { Agent as HttpAgent, type IncomingHttpHeaders, type IncomingMessage, request as httpRequest } from "node:http";
import type * as Https from "node:https";
import { createRequire } from "node:module";

// node:https (and TLS under it) is ~10 ms to load: loaded when the first https:// call is made,
// not while the gateway starts.
const requireBuiltin = createRequire(import.meta.url);

/** The subset of `fetch`'s init the openai SDK passes. */
interface FetchInit {
  method?: string;
  headers?: ConstructorParameters<typeof Headers>[0] | undefined;
  body?: unknown;
  signal?: AbortSignal | null | undefined;
}

/** Read-only response headers over Node's already-parsed header object. */
class ResponseHeaders {
  constructor(private readonly raw: IncomingHttpHeaders) {}
  get(name: string): string | null {
    const v = this.raw[name.toLowerCase()];
    return v === undefined ? null : Array.isArray(v) ? v.join(", ") : v;
  }
  has(name: string): boolean {
    return this.raw[name.toLowerCase()] !== undefined;
  }
  *entries(): IterableIterator<[string, string]> {
    for (const name of Object.keys(this.raw)) yield [name, this.get(name) as string];
  }
  keys(): IterableIterator<string> {
    return Object.keys(this.raw)[Symbol.iterator]();
  }
  *values(): IterableIterator<string> {
    for (const [, v] of this.entries()) yield v;
  }
  forEach(fn: (value: string, name: string) => void): void {
    for (const [k, v] of this.entries()) fn(v, k);
  }
  [Symbol.iterator](): IterableIterator<[string, string]> {
    return this.entries();
  }
}

/** What the SDK reads of a response: status, headers, and the body as bytes, text or JSON. */
class HttpResponse {
  readonly ok: boolean;
  readonly status: number;
  readonly statusText: string;
  readonly headers: ResponseHeaders;
  readonly redirected = false;
  readonly type = "basic";
  bodyUsed = false;
  constructor(
    readonly url: string,
    /** An async iterable of byte chunks, which is all the SDK's stream reader needs. */
    readonly body: IncomingMessage,
  ) {
    this.status = body.statusCode ?? 0;
    this.ok = this.status >= 200 && this.status < 300;
    this.statusText = body.statusMessage ?? "";
    this.headers = new ResponseHeaders(body.headers);
  }
  async arrayBuffer(): Promise<ArrayBuffer> {
    this.bodyUsed = true;
    const chunks: Buffer[] = [];
    for await (const c of this.body) chunks.push(c as Buffer);
    const all = Buffer.concat(chunks);
    return all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength) as ArrayBuffer;
  }
  async text(): Promise<string> {
    return Buffer.from(await this.arrayBuffer()).toString("utf8");
  }
  async json(): Promise<unknown> {
    return JSON.parse(await this.text());
  }
}

function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  const err = new Error(reason instanceof Error ? reason.message : "This operation was aborted", { cause: reason });
  err.name = "AbortError";
  return err;
}

function headerObject(init: ConstructorParameters<typeof Headers>[0] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!init) return out;
  const pairs = init instanceof Headers || Array.isArray(init) ? (init as Iterable<[string, string]>) : Object.entries(init);
  for (const [k, v] of pairs) out[k.toLowerCase()] = String(v);
  return out;
}

/**
 * How long a pooled connection may sit idle. It also switches on Node's reading of the
 * server's `Keep-Alive: timeout=N` header, which Node 20's agent ignores when the agent has
 * no timeout of its own: with it, an idle connection is closed a second before the server
 * would close it, instead of being reused just as the server closes it (an ECONNRESET, and
 * a retry after backoff). A server that announces nothing gets this.
 */
const IDLE_TIMEOUT_MS = 15_000;

/** A `fetch` on node:http, and the connection pools behind it. */
export interface HttpFetch {
  fetch: (url: string | URL | Request, init?: FetchInit) => Promise<HttpResponse>;
  close(): void;
}

/**
 * A `fetch` on node:http with keep-alive pools, for the SDKs that take one (openai's and
 * grammy's `fetch` options). Node's built-in fetch (undici) costs about half a millisecond
 * of CPU per streamed chat call in web streams, transferables and header objects; this one
 * hands the SDK the response's own byte stream, which our chat stream reader
 * (agent/chat-stream.ts) reads directly. It does what their JSON calls need and no more:
 * string or byte bodies, no redirects followed, no cache. Connection failures reject with a
 * TypeError, like fetch; an aborted signal rejects (or breaks the body stream) with an
 * AbortError.
 */
export function createHttpFetch(maxSockets: number): HttpFetch {
  const http = new HttpAgent({ keepAlive: true, maxSockets, scheduling: "lifo", timeout: IDLE_TIMEOUT_MS });
  let https: { module: typeof Https; agent: Https.Agent } | undefined;
  const secure = (): NonNullable<typeof https> => {
    if (https) return https;
    const module = requireBuiltin("node:https") as typeof Https;
    return (https = { module, agent: new module.Agent({ keepAlive: true, maxSockets, scheduling: "lifo", timeout: IDLE_TIMEOUT_MS }) });
  };
  return {
    fetch(input, init = {}) {
      const url = typeof input === "string" ? new URL(input) : input instanceof URL ? input : new URL(input.url);
      const { signal } = init;
      if (signal?.aborted) return Promise.reject(abortError(signal));
      if (url.protocol !== "https:" && url.protocol !== "http:") return Promise.reject(new TypeError(`fetch: unsupported protocol ${url.protocol}`));
      const body = init.body;
      if (body !== undefined && body !== null && typeof body !== "string" && !(body instanceof Uint8Array)) {
        return Promise.reject(new TypeError("fetch: only string and byte bodies are supported"));
      }
      const headers = headerObject(init.headers);
      if (body !== undefined && body !== null) headers["content-length"] = String(Buffer.byteLength(body));
      const tls = url.protocol === "https:" ? secure() : undefined;
      const send = tls ? tls.module.request : httpRequest;
      const agent = tls ? tls.agent : http;
      return new Promise<HttpResponse>((resolve, reject) => {
        let response: IncomingMessage | undefined;
        // Plain options rather than the URL, which node:http would convert into them on every
        // call (~6 µs of a ~100 µs exchange). An IPv6 literal loses its brackets, as there.
        const host = url.hostname;
        const options = {
          protocol: url.protocol,
          hostname: host.startsWith("[") ? host.slice(1, -1) : host,
          port: url.port,
          path: url.pathname + url.search,
          method: init.method ?? "GET",
          headers,
          agent,
        };
        const req = send(options, (res) => {
          response = res;
          res.once("close", () => signal?.removeEventListener("abort", onAbort));
          resolve(new HttpResponse(url.href, res));
        });
        const onAbort = (): void => {
          const err = abortError(signal as AbortSignal);
          if (response) response.destroy(err);
          else req.destroy(err);
        };
        signal?.addEventListener("abort", onAbort, { once: true });
        req.once("close", () => {
          // The request closes once its response has been read to the end or destroyed.
          if (!response) signal?.removeEventListener("abort", onAbort);
        });
        req.once("error", (err: Error) => {
          if (response) return;
          reject(err.name === "AbortError" ? err : new TypeError("fetch failed", { cause: err }));
        });
        req.end(body as string | Uint8Array | undefined);
      });
    },
    close() {
      http.destroy();
      https?.agent.destroy();
    },
  };
}
