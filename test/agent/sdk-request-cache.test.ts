import OpenAI from "openai";
import { describe, expect, it } from "vitest";
import { withCachedRequestHeaders } from "../../src/agent/sdk-request-cache.js";

type Options = Parameters<OpenAI["buildRequest"]>[0];
type Built = Awaited<ReturnType<OpenAI["buildRequest"]>>;

/** A built request with its headers as a plain object, whichever form they came in. */
function plain(built: Built): Record<string, unknown> {
  const h = built.req.headers as unknown;
  const headers = h instanceof Headers ? Object.fromEntries(h.entries()) : { ...(h as Record<string, string>) };
  return { ...built, req: { ...built.req, headers } };
}

// What `chat.completions.create(body, { signal })` hands the client.
const chat = (content: string, signal?: AbortSignal): Options => ({
  method: "post",
  path: "/chat/completions",
  body: { model: "m", messages: [{ role: "user", content }], stream: true, stream_options: { include_usage: true } },
  stream: true,
  __security: { bearerAuth: true },
  ...(signal ? { signal } : {}),
});

describe("the SDK client with cached request headers", () => {
  const Cached = withCachedRequestHeaders(OpenAI);
  const stock = (client: OpenAI, options: Options, retryCount = 0): Promise<Built> =>
    OpenAI.prototype.buildRequest.call(client, options, { retryCount });

  it("builds every chat request exactly as the SDK does, after the first", async () => {
    const client = new Cached({ apiKey: "sk-cache-test", baseURL: "http://127.0.0.1:9/v1", maxRetries: 0, timeout: 7_000 });
    const signal = new AbortController().signal;
    await client.buildRequest(chat("first"));
    for (const [options, retryCount] of [
      [chat("second", signal), 0],
      [chat("a different body, with \"quotes\" and ünïcödé"), 0],
      [chat("a retry"), 2],
    ] as const) {
      const ours = await client.buildRequest(options, { retryCount });
      expect(plain(ours)).toEqual(plain(await stock(client, options, retryCount)));
      expect(ours.req.signal).toBe(options.signal);
    }
    // Now served from the cache: the same frozen object each time, with the key in it.
    const a = (await client.buildRequest(chat("x"))).req.headers as unknown as Record<string, string>;
    const b = (await client.buildRequest(chat("y"))).req.headers as unknown as Record<string, string>;
    expect(a).toBe(b);
    expect(Object.isFrozen(a)).toBe(true);
    expect(a["authorization"]).toBe("Bearer sk-cache-test");
    expect(a["x-stainless-retry-count"]).toBe("0");
  });

  it("leaves requests with anything per call to the SDK", async () => {
    const client = new Cached({ apiKey: "sk-cache-test", baseURL: "http://127.0.0.1:9/v1", maxRetries: 0 });
    await client.buildRequest(chat("warm the cache"));
    const withHeader = { ...chat("traced"), headers: { "X-Trace": "abc" } };
    const built = await client.buildRequest(withHeader);
    expect(built.req.headers).toBeInstanceOf(Headers);
    expect(built.req.headers.get("x-trace")).toBe("abc");
    expect(plain(built)).toEqual(plain(await stock(client, withHeader)));

    const withTimeout = { ...chat("slow"), timeout: 1_000 };
    const slow = await client.buildRequest(withTimeout);
    expect(slow.req.headers).toBeInstanceOf(Headers);
    expect(slow.req.headers.get("x-stainless-timeout")).toBe("1");

    const get: Options = { method: "get", path: "/models" };
    expect((await client.buildRequest(get)).req.headers).toBeInstanceOf(Headers);
  });

  it("does not cache a key that is fetched per request", async () => {
    let n = 0;
    const client = new Cached({ apiKey: async () => `sk-rotating-${++n}`, baseURL: "http://127.0.0.1:9/v1", maxRetries: 0 });
    // The SDK resolves a function key in prepareOptions, before building each request.
    const build = async (o: Options): Promise<Built> => {
      await (client as unknown as { prepareOptions(o: Options): Promise<void> }).prepareOptions(o);
      return client.buildRequest(o);
    };
    const first = await build(chat("one"));
    const second = await build(chat("two"));
    expect(first.req.headers.get("authorization")).toBe("Bearer sk-rotating-1");
    expect(second.req.headers.get("authorization")).toBe("Bearer sk-rotating-2");
  });
});
