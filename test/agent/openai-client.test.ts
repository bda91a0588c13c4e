import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { createOpenAiClient } from "../../src/agent/openai-client.js";
import type { LlmClient, LlmRequest } from "../../src/agent/llm-types.js";
import { type FakeOpenAi, type FakeOpenAiOptions, startFakeOpenAi } from "../support/fake-openai.js";

let fake: FakeOpenAi | undefined;
afterEach(async () => {
  await fake?.close();
  fake = undefined;
});

async function client(llm: FakeOpenAiOptions = {}, timeoutMs = 10_000): Promise<LlmClient> {
  fake = await startFakeOpenAi(llm);
  return createOpenAiClient({
    baseUrl: fake.url,
    apiKey: "sk-test-client",
    model: "m",
    maxConcurrency: 4,
    requestsPerMinute: 0,
    timeoutMs,
    maxRetries: 0,
    configured: true,
    logger: pino({ level: "silent" }),
  });
}

const ask = (signal: AbortSignal, text: string, onDelta?: (d: string) => void): LlmRequest => ({
  system: "be brief",
  messages: [{ role: "user", content: text }],
  signal,
  msgId: `m-${text}`,
  ...(onDelta ? { onDelta } : {}),
});

describe("the OpenAI-compatible client", () => {
  it("stops a call when the bus's signal aborts, before the answer starts and while it streams", async () => {
    const llm = await client({ chunkSize: 1, chunkDelayMs: 100 });
    const bus = new AbortController();
    const shutdown = new Error("gateway shutting down");

    // While streaming: abort after the first piece of text.
    const started = performance.now();
    const pieces: string[] = [];
    const streaming = llm.complete(ask(bus.signal, "a long answer", (d) => {
      pieces.push(d);
      if (pieces.length === 1) bus.abort(shutdown);
    }));
    await expect(streaming).rejects.toBe(shutdown);
    // "echo: a long answer" at 100 ms a character would take ~1.9 s.
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(pieces.length).toBeLessThan(4);

    // A signal aborted already: refused without reaching the provider.
    const before = fake!.count;
    await expect(llm.complete(ask(bus.signal, "too late"))).rejects.toBe(shutdown);
    expect(fake!.count).toBe(before);
  });

  it("stops a call that has no answer yet when the bus's signal aborts", async () => {
    const llm = await client();
    fake!.faults.push({ hang: true });
    const bus = new AbortController();
    const hanging = llm.complete(ask(bus.signal, "hello?"));
    await new Promise((r) => setTimeout(r, 100));
    expect(fake!.count).toBe(1);
    const reason = new Error("drain cut short");
    bus.abort(reason);
    await expect(hanging).rejects.toBe(reason);
  });
});
