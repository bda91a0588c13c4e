import { getEventListeners } from "node:events";
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import OpenAI from "openai";
import { afterEach, describe, expect, it } from "vitest";
import { createHttpFetch, type HttpFetch } from "../../src/http/http-fetch.js";
import { type FakeOpenAi, startFakeOpenAi } from "../support/fake-openai.js";

let http: HttpFetch | undefined;
let fake: FakeOpenAi | undefined;
let server: Server | undefined;
afterEach(async () => {
  http?.close();
  await fake?.close();
  await new Promise((r) => (server ? server.close(r) : r(undefined)));
  http = fake = server = undefined;
});

/** A server that sends headers and one chunk, then keeps the response open until told. */
async function startTrickle(): Promise<{ url: string; open: ServerResponse[] }> {
  const open: ServerResponse[] = [];
  server = createServer((req, res) => {
    req.resume();
    res.writeHead(200, { "content-type": "text/event-stream", "x-multi": ["a", "b"] });
    res.write("data: first\n\n");
    open.push(res);
  });
  await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, open };
}

describe("the gateway's fetch for the openai SDK", () => {
  it("carries a streamed chat call through the real SDK", async () => {
    fake = await startFakeOpenAi({ chunkSize: 3 });
    http = createHttpFetch(4);
    const sdk = new OpenAI({ baseURL: fake.url, apiKey: "sk-test-fetch", maxRetries: 0, fetch: http.fetch as unknown as typeof fetch });
    const stream = await sdk.chat.completions.create({ model: "m", messages: [{ role: "user", content: "héllo wörld" }], stream: true });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
    expect(text).toBe("echo: héllo wörld");
    expect(fake.requests[0]?.authorization).toBe("Bearer sk-test-fetch");
  });

  it("leaves no abort listener behind once a body has been read", async () => {
    // The leak the soak test once found: listeners on a long-lived signal hold every request.
    fake = await startFakeOpenAi();
    http = createHttpFetch(2);
    const controller = new AbortController();
    for (let i = 0; i < 3; i++) {
      const res = await http.fetch(`${fake.url}/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "m", messages: [{ role: "user", content: `n${i}` }] }),
        signal: controller.signal,
      });
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ choices: [{ message: { content: `echo: n${i}` } }] });
    }
    await new Promise((r) => setImmediate(r));
    expect(getEventListeners(controller.signal, "abort")).toHaveLength(0);
  });

  it("closes an idle connection before the server's announced keep-alive timeout", async () => {
    // The server announces "Keep-Alive: timeout=2": a connection idle for 1.5 s is about to
    // be closed by it and must not be reused (Node 20's agent ignores the hint by default).
    let connections = 0;
    server = createServer((req, res) => {
      req.resume();
      res.end("{}");
    });
    server.keepAliveTimeout = 2_000;
    server.on("connection", () => connections++);
    await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    http = createHttpFetch(4);
    await (await http.fetch(url)).text();
    await (await http.fetch(url)).text();
    expect(connections).toBe(1);
    await new Promise((r) => setTimeout(r, 1_500));
    await (await http.fetch(url)).text();
    expect(connections).toBe(2);
  });

  it("sends the method, path, query, Host and a counted body as given", async () => {
    let seen: Record<string, unknown> = {};
    server = createServer((req, res) => {
      let body = "";
      req.setEncoding("utf8");
      req.on("data", (c: string) => (body += c));
      req.on("end", () => {
        seen = { method: req.method, url: req.url, host: req.headers.host, type: req.headers["content-type"], length: req.headers["content-length"], body };
        res.end("{}");
      });
    });
    await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
    const port = (server.address() as AddressInfo).port;
    http = createHttpFetch(1);
    const res = await http.fetch(`http://127.0.0.1:${port}/v1/chat/completions?api-version=2024-10-21`, {
      method: "POST",
      headers: new Headers({ "Content-Type": "application/json" }),
      body: '{"q":"héllo"}',
    });
    expect(res.status).toBe(200);
    expect(seen).toEqual({
      method: "POST",
      url: "/v1/chat/completions?api-version=2024-10-21",
      host: `127.0.0.1:${port}`,
      type: "application/json",
      length: String(Buffer.byteLength('{"q":"héllo"}')),
      body: '{"q":"héllo"}',
    });
  });

  it("reads plain JSON answers and maps HTTP errors with their headers", async () => {
    fake = await startFakeOpenAi();
    http = createHttpFetch(4);
    const sdk = new OpenAI({ baseURL: fake.url, apiKey: "k", maxRetries: 0, fetch: http.fetch as unknown as typeof fetch });
    const done = await sdk.chat.completions.create({ model: "m", messages: [{ role: "user", content: "plain" }] });
    expect(done.choices[0]?.message.content).toBe("echo: plain");
    fake.faults.push({ status: 429, retryAfter: 7 });
    const err = await sdk.chat.completions.create({ model: "m", messages: [{ role: "user", content: "x" }] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    expect((err as InstanceType<typeof OpenAI.APIError>).headers?.get("Retry-After")).toBe("7");
  });

  it("rejects with a TypeError that keeps its cause when nothing listens, over http and https", async () => {
    http = createHttpFetch(1);
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const err = await http.fetch(`http://127.0.0.1:${port}/v1/x`, { method: "POST", body: "{}" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TypeError);
    expect(((err as TypeError).cause as NodeJS.ErrnoException).code).toBe("ECONNREFUSED");
    // https:// goes through node:https, loaded on first use.
    const secure = await http.fetch(`https://127.0.0.1:${port}/v1/x`).catch((e: unknown) => e);
    expect(secure).toBeInstanceOf(TypeError);
    expect(((secure as TypeError).cause as NodeJS.ErrnoException).code).toBe("ECONNREFUSED");
  });

  it("breaks a body that is still arriving with an AbortError when the signal aborts", async () => {
    const { url, open } = await startTrickle();
    http = createHttpFetch(1);
    const controller = new AbortController();
    const res = await http.fetch(url, { signal: controller.signal });
    expect(res.headers.get("X-Multi")).toBe("a, b");
    expect([...res.headers.entries()].some(([k]) => k === "content-type")).toBe(true);
    const chunks: string[] = [];
    const reading = (async () => {
      for await (const c of res.body) {
        chunks.push(String(c));
        controller.abort(new Error("user went away"));
      }
    })();
    const err = await reading.catch((e: unknown) => e);
    expect(chunks).toEqual(["data: first\n\n"]);
    expect((err as Error).name).toBe("AbortError");
    expect(getEventListeners(controller.signal, "abort")).toHaveLength(0);
    for (const r of open) r.end();
  });

  it("refuses at once when the signal is already aborted, and for bodies it cannot send", async () => {
    http = createHttpFetch(1);
    const controller = new AbortController();
    controller.abort();
    await expect(http.fetch("http://127.0.0.1:9/", { signal: controller.signal })).rejects.toMatchObject({ name: "AbortError" });
    await expect(http.fetch("http://127.0.0.1:9/", { method: "POST", body: new Blob(["x"]) })).rejects.toThrow(/string and byte bodies/);
    await expect(http.fetch("ftp://127.0.0.1/")).rejects.toThrow(/unsupported protocol ftp:/);
  });
});
