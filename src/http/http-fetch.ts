import type { IncomingHttpHeaders } from "node:http";
import { createRequire } from "node:module";
import type { Readable } from "node:stream";
import type * as Undici from "undici";

// undici is ~70 ms to load: required on the first call (the LLM client warms it after the
// gateway is ready), not while the gateway starts.
const requireDep = createRequire(import.meta.url);
let undici: typeof Undici | undefined;
const loadUndici = (): typeof Undici => (undici ??= requireDep("undici") as typeof Undici);

/** The subset of `fetch`'s init the openai SDK and grammy pass. */
interface FetchInit {
  method?: string;
  headers?: ConstructorParameters<typeof Headers>[0] | undefined;
  body?: unknown;
  signal?: AbortSignal | null | undefined;
}

/** Read-only response headers over the already-parsed header object. */
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

/** What the SDKs read of a response: status, headers, and the body as bytes, text or JSON. */
class HttpResponse {
  readonly ok: boolean;
  readonly statusText = "";
  readonly headers: ResponseHeaders;
  readonly redirected = false;
  readonly type = "basic";
  bodyUsed = false;
  constructor(
    readonly url: string,
    readonly status: number,
    headers: IncomingHttpHeaders,
    /** A Node stream of byte chunks, which is all the SDK's stream reader and ours need. */
    readonly body: Readable,
  ) {
    this.ok = status >= 200 && status < 300;
    this.headers = new ResponseHeaders(headers);
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

/** Headers the client owns: undici refuses them from a caller. */
const HOP_BY_HOP = new Set(["connection", "keep-alive", "transfer-encoding", "upgrade", "content-length", "host"]);

function headerObject(init: ConstructorParameters<typeof Headers>[0] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!init) return out;
  const pairs = init instanceof Headers || Array.isArray(init) ? (init as Iterable<[string, string]>) : Object.entries(init);
  for (const [k, v] of pairs) {
    const name = k.toLowerCase();
    if (!HOP_BY_HOP.has(name)) out[name] = String(v);
  }
  return out;
}

/**
 * How long a pooled connection may sit idle when the server announces no `Keep-Alive:
 * timeout=N`. One that does is closed a second before its announced timeout, instead of
 * being reused just as the server closes it (an ECONNRESET, and a retry after backoff).
 */
const IDLE_TIMEOUT_MS = 15_000;

/** A `fetch` on undici's connection pools. */
export interface HttpFetch {
  fetch: (url: string | URL | Request, init?: FetchInit) => Promise<HttpResponse>;
  /** Loads undici now rather than on the first call. */
  warm(): void;
  close(): void;
}

/**
 * A `fetch` for the SDKs that take one (openai's and grammy's `fetch` options), on undici's
 * `request` API with keep-alive pools of `maxConnections` per origin. Node's built-in fetch
 * (undici too, under web streams, transferables and header objects) costs about half a
 * millisecond of CPU per streamed chat call, and node:http's ClientRequest ~100 µs; this
 * costs about a third of the latter (`node dist/bench/sdk-cost.js`). It hands the SDK the
 * response's own byte stream, which our chat stream reader (agent/chat-stream.ts) reads
 * directly. It does what their JSON calls need and no more: string or byte bodies, no
 * redirects followed, no cache. Connection failures reject with a TypeError, like fetch; an
 * aborted signal rejects (or breaks the body stream) with an AbortError. Headers and body
 * take as long as the caller allows: the SDK's and grammy's own timeouts govern, not undici's.
 */
export function createHttpFetch(maxConnections: number): HttpFetch {
  let agent: Undici.Agent | undefined;
  let closed = false;
  const createAgent = (): Undici.Agent =>
    new (loadUndici().Agent)({
      connections: maxConnections,
      keepAliveTimeout: IDLE_TIMEOUT_MS,
      keepAliveTimeoutThreshold: 1_000,
      headersTimeout: 0,
      bodyTimeout: 0,
    });
  return {
    fetch(input, init = {}) {
      const url = typeof input === "string" ? new URL(input) : input instanceof URL ? input : new URL(input.url);
      const { signal } = init;
      if (signal?.aborted) return Promise.reject(abortError(signal));
      if (url.protocol !== "https:" && url.protocol !== "http:") return Promise.reject(new TypeError(`fetch: unsupported protocol ${url.protocol}`));
      const body = init.body ?? null;
      if (body !== null && typeof body !== "string" && !(body instanceof Uint8Array)) {
        return Promise.reject(new TypeError("fetch: only string and byte bodies are supported"));
      }
      if (closed) return Promise.reject(new TypeError("fetch failed", { cause: new Error("the HTTP client is closed") }));
      const pool = (agent ??= createAgent());
      let res: Undici.Dispatcher.ResponseData | undefined;
      // Registered before undici's own listener, so a body still arriving breaks with an
      // AbortError (fetch's contract) rather than with the bare abort reason.
      const onAbort = (): void => {
        res?.body.destroy(abortError(signal as AbortSignal));
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      const release = (): void => signal?.removeEventListener("abort", onAbort);
      return pool
        .request({
          origin: url.origin,
          path: url.pathname + url.search,
          method: (init.method ?? "GET") as Undici.Dispatcher.HttpMethod,
          headers: headerObject(init.headers),
          body: body as string | Uint8Array | null,
          ...(signal ? { signal } : {}),
        })
        .then(
          (r) => {
            res = r;
            if (signal) r.body.once("close", release);
            return new HttpResponse(url.href, r.statusCode, r.headers as IncomingHttpHeaders, r.body);
          },
          (err: Error) => {
            release();
            throw signal?.aborted ? abortError(signal) : new TypeError("fetch failed", { cause: err });
          },
        );
    },
    warm() {
      agent ??= createAgent();
    },
    close() {
      closed = true;
      void agent?.destroy().catch(() => undefined);
    },
  };
}
