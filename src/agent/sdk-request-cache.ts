import type OpenAIType from "openai";

type OpenAIModule = typeof OpenAIType;
type BuildRequest = OpenAIType["buildRequest"];
type RequestOptions = Parameters<BuildRequest>[0];
type BuiltRequest = Awaited<ReturnType<BuildRequest>>;

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && Object.getPrototypeOf(v) === Object.prototype;

/** The user key's scheme alone, as chat calls ask (admin endpoints ask for the admin key). */
function bearerOnly(security: RequestOptions["__security"]): boolean {
  if (security === undefined) return true;
  if (security.bearerAuth !== true) return false;
  // Any other scheme, known now or added later, goes to the SDK.
  for (const scheme in security) if (scheme !== "bearerAuth") return false;
  return true;
}

/**
 * The openai SDK's client, building its JSON POSTs' headers once instead of on every call.
 *
 * The SDK merges each request's headers anew from six sources through undici `Headers`
 * objects, generators and sets (`buildHeaders`): about a sixth of the gateway's heap
 * allocation per web chat message and 3–5 % of its main thread at 1,000 msg/s, for headers
 * that never change between two chat calls of one client. This subclass lets the SDK build
 * the first request of each kind and keeps its headers; a later request that the SDK would
 * build from the same inputs (a POST with a plain JSON body and nothing per request: no
 * extra headers, query, idempotency key or fetch options, the same retry count and
 * timeout, a fixed API key) gets the same headers and the same `JSON.stringify` body
 * without the merge. Anything else goes through the SDK as shipped, and so does every
 * request of a subclass such as `AzureOpenAI`, whose own `buildRequest` rewrites the path.
 * The tests hold the two paths to identical output, so an SDK upgrade that starts varying a
 * header per call fails there, not in production.
 *
 * The kept headers are a frozen plain object, not `Headers`: what reads them after this
 * step (the SDK's request logging and our `fetch`) takes either, and the one SDK path that
 * writes to them (workload identity tokens) is off when the API key is a string.
 */
export function withCachedRequestHeaders(OpenAI: OpenAIModule): OpenAIModule {
  if (OpenAI.name !== "OpenAI") throw new TypeError(`withCachedRequestHeaders: OpenAI itself only, not ${OpenAI.name}`);
  class CachedHeadersOpenAI extends OpenAI {
    /** Headers as the SDK built them, by retry count and timeout. */
    readonly #headers = new Map<string, Readonly<Record<string, string>>>();

    override async buildRequest(options: RequestOptions, { retryCount = 0 }: { retryCount?: number } = {}): Promise<BuiltRequest> {
      const cacheable =
        options.method === "post" &&
        options.headers === undefined &&
        options.query === undefined &&
        options.defaultBaseURL === undefined &&
        options.idempotencyKey === undefined &&
        options.fetchOptions === undefined &&
        !("timeout" in options) &&
        isPlainObject(options.body) &&
        bearerOnly(options.__security) &&
        this.idempotencyHeader === undefined &&
        this.fetchOptions === undefined &&
        typeof this._options.apiKey === "string";
      if (!cacheable) return super.buildRequest(options, { retryCount });
      const key = `${retryCount}:${this.timeout}`;
      const headers = this.#headers.get(key);
      if (headers === undefined) {
        const built = await super.buildRequest(options, { retryCount });
        this.#headers.set(key, Object.freeze(Object.fromEntries(built.req.headers.entries())));
        return built;
      }
      return {
        req: {
          method: options.method,
          headers: headers as unknown as Headers,
          ...(options.signal ? { signal: options.signal } : {}),
          body: JSON.stringify(options.body),
        },
        url: this.buildURL(options.path, undefined),
        timeout: this.timeout,
      };
    }
  }
  // The SDK's User-Agent is the class's name ("OpenAI/JS 6.x"): the subclass keeps it.
  Object.defineProperty(CachedHeadersOpenAI, "name", { value: OpenAI.name });
  return CachedHeadersOpenAI;
}
