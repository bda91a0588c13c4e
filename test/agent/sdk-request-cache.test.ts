import { createServer, type IncomingHttpHeaders } from "node:http";
import OpenAI, { AzureOpenAI, type ClientOptions } from "openai";
import { describe, expect, it } from "vitest";
import { withCachedRequestHeaders } from "../../src/agent/sdk-request-cache.js";
import { createHttpFetch } from "../../src/http/http-fetch.js";

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

// Every client-wide setting that goes into a request's headers or URL.
const settings: ClientOptions = {
  apiKey: "sk-cache-test",
  adminAPIKey: "sk-admin-test",
  organization: "org-1",
  project: "proj-1",
  baseURL: "http://127.0.0.1:9/v1",
  defaultHeaders: { "X-Team": "ops", "OpenAI-Beta": "assistants=v2" },
  defaultQuery: { "api-version": "1" },
  maxRetries: 0,
  timeout: 7_000,
};

describe("the SDK client with cached request headers", () => {
  const Cached = withCachedRequestHeaders(OpenAI);

  it("builds every chat request exactly as the stock client does, once its headers are cached", async () => {
    const ours = new Cached(settings);
    const stock = new OpenAI(settings);
    const signal = new AbortController().signal;
    const cases: [Options, number][] = [
      [chat("first"), 0],
      [chat("second", signal), 0],
      [chat('a different body, with "quotes" and ünïcödé'), 0],
      [{ ...chat("a query in the path"), path: "/chat/completions?a=1" }, 0],
      [chat("a retry"), 2],
      [chat("another retry"), 2],
    ];
    // Each retry count is built once by the SDK before the comparison counts.
    await ours.buildRequest(chat("warm"), { retryCount: 2 });
    for (const [options, retryCount] of cases) {
      const built = await ours.buildRequest(options, { retryCount });
      expect(plain(built)).toEqual(plain(await stock.buildRequest(options, { retryCount })));
      expect(built.req.signal).toBe(options.signal);
    }
    // A base URL changed after warming is still followed.
    ours.baseURL = stock.baseURL = "http://127.0.0.1:10/v2";
    expect(plain(await ours.buildRequest(chat("moved")))).toEqual(plain(await stock.buildRequest(chat("moved"))));
    // Served from the cache: the same frozen object each time.
    const a = (await ours.buildRequest(chat("x"))).req.headers as unknown as Record<string, string>;
    const b = (await ours.buildRequest(chat("y"))).req.headers as unknown as Record<string, string>;
    expect(a).toBe(b);
    expect(Object.isFrozen(a)).toBe(true);
    expect(a["user-agent"]).toMatch(/^OpenAI\/JS /);
  });

  it("leaves requests with anything per call, or the admin key, to the SDK", async () => {
    const ours = new Cached(settings);
    const stock = new OpenAI(settings);
    await ours.buildRequest(chat("warm the cache"));
    const admin: Options = { method: "post", path: "/organization/projects", body: { name: "p" }, __security: { adminAPIKeyAuth: true } };
    const cases: Options[] = [
      { ...chat("traced"), headers: { "X-Trace": "abc" } },
      { ...chat("slow"), timeout: 1_000 },
      { method: "get", path: "/models" },
      admin,
    ];
    for (const options of cases) {
      const built = await ours.buildRequest(options);
      expect(built.req.headers).toBeInstanceOf(Headers);
      expect(plain(built)).toEqual(plain(await stock.buildRequest(options)));
    }
    expect((await ours.buildRequest(admin)).req.headers.get("authorization")).toBe("Bearer sk-admin-test");
    // And the other way round: an admin call first caches nothing a chat call would use.
    const fresh = new Cached(settings);
    await fresh.buildRequest(admin);
    expect(plain(await fresh.buildRequest(chat("after admin")))).toEqual(plain(await stock.buildRequest(chat("after admin"))));
  });

  it("does not cache a key that is fetched per request, nor wrap a subclass", async () => {
    let n = 0;
    const client = new Cached({ apiKey: async () => `sk-rotating-${++n}`, baseURL: "http://127.0.0.1:9/v1", maxRetries: 0 });
    // The SDK resolves a function key in prepareOptions, before building each request.
    const build = async (o: Options): Promise<Built> => {
      await (client as unknown as { prepareOptions(o: Options): Promise<void> }).prepareOptions(o);
      return client.buildRequest(o);
    };
    expect((await build(chat("one"))).req.headers.get("authorization")).toBe("Bearer sk-rotating-1");
    expect((await build(chat("two"))).req.headers.get("authorization")).toBe("Bearer sk-rotating-2");
    // Azure's client rewrites the path in its own buildRequest.
    expect(() => withCachedRequestHeaders(AzureOpenAI as unknown as typeof OpenAI)).toThrow(/OpenAI itself only/);
  });

  it("puts the same bytes on the wire as the stock client, through our fetch", async () => {
    const seen: { headers: IncomingHttpHeaders; body: string; url: string }[] = [];
    const server = createServer((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => (body += c.toString()));
      req.on("end", () => {
        seen.push({ headers: req.headers, body, url: req.url ?? "" });
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ id: "c", object: "chat.completion", created: 0, model: "m", choices: [] }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const http = createHttpFetch(2);
    try {
      const baseURL = `http://127.0.0.1:${(server.address() as { port: number }).port}/v1`;
      for (const Client of [OpenAI, Cached]) {
        const client = new Client({ ...settings, baseURL, fetch: http.fetch as unknown as typeof fetch });
        for (const content of ["one", "two"]) {
          await client.chat.completions.create({ model: "m", messages: [{ role: "user", content }] }, { signal: new AbortController().signal });
        }
      }
    } finally {
      http.close();
      server.close();
    }
    const [stock1, stock2, ours1, ours2] = seen;
    expect(ours1).toEqual(stock1);
    expect(ours2).toEqual(stock2);
    expect(ours2?.headers["user-agent"]).toMatch(/^OpenAI\/JS /);
  });
});
