import { afterEach, describe, expect, it, vi } from "vitest";
import { capturedLogs, startTestGateway, type TestGateway } from "../support/harness.js";

let t: TestGateway | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

async function ask(user: string, text: string): Promise<{ id: string; status: string; reply?: string; error?: string }> {
  const posted = await t!.post(user, text);
  expect(posted.status).toBe(202);
  const id = posted.body.id as string;
  return { id, ...(await t!.result(id)) };
}

describe("agent and LLM client", () => {
  it("retries a 429, honouring Retry-After, then answers", async () => {
    t = await startTestGateway();
    t.llm.faults.push({ status: 429, retryAfter: 1 });
    const started = Date.now();
    const r = await ask("alice", "hi");
    expect(r.status).toBe("done");
    expect(r.reply).toBe("echo: hi");
    expect(t.llm.count).toBe(2);
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
  });

  it("retries 500s, a broken stream, malformed JSON and a reset connection", async () => {
    t = await startTestGateway({ env: { ZEPTOCLAW_LLM_MAX_RETRIES: "5" } });
    t.llm.faults.push({ status: 500 }, { breakStream: true }, { malformed: true }, { resetConnection: true });
    // Failures are logged through pino only: the SDK's stream reader used to print a
    // malformed chunk to the console, outside the log and its redaction.
    const consoleError = vi.spyOn(console, "error");
    try {
      const r = await ask("alice", "still there?");
      expect(r).toMatchObject({ status: "done", reply: "echo: still there?" });
      expect(t.llm.count).toBe(5);
      expect(consoleError).not.toHaveBeenCalled();
    } finally {
      consoleError.mockRestore();
    }
  });

  it("answers through a provider that ignores stream: true and sends one JSON completion", async () => {
    t = await startTestGateway({
      llm: {
        ignoreStream: true,
        answer: (req) =>
          req.messages.some((m) => m.role === "tool") ? "it is time" : { toolCalls: [{ name: "current_time", arguments: '{"time_zone":"UTC"}' }] },
      },
    });
    const r = await ask("alice", "what time is it?");
    // A tool call and then a text answer, both from plain JSON: not "(the model returned an empty answer)".
    expect(r).toMatchObject({ status: "done", reply: "it is time" });
    expect(t.llm.count).toBe(2);
    expect(t.llm.requests[1]?.messages.some((m) => m.role === "tool")).toBe(true);
  });

  it("runs tool calls streamed without an index, as Gemini's compatible endpoint sends them", async () => {
    t = await startTestGateway({
      llm: {
        toolCallsWithoutIndex: true,
        answer: (req) =>
          req.messages.some((m) => m.role === "tool")
            ? `ran ${req.messages.filter((m) => m.role === "tool").length} tools`
            : {
                toolCalls: [
                  { name: "current_time", arguments: '{"time_zone":"UTC"}' },
                  { name: "current_time", arguments: '{"time_zone":"Asia/Tokyo"}' },
                ],
              },
      },
    });
    const r = await ask("alice", "what time is it here and in Tokyo?");
    expect(r).toMatchObject({ status: "done", reply: "ran 2 tools" });
    const calls = t.llm.requests[1]?.messages.find((m) => m.tool_calls)?.tool_calls as { id: string; function: { arguments: string } }[];
    expect(calls.map((c) => [c.id, c.function.arguments])).toEqual([
      ["call_1_0", '{"time_zone":"UTC"}'],
      ["call_1_1", '{"time_zone":"Asia/Tokyo"}'],
    ]);
  });

  it("times out a hanging LLM call and retries it", async () => {
    t = await startTestGateway({ env: { ZEPTOCLAW_LLM_TIMEOUT_MS: "300", ZEPTOCLAW_LLM_MAX_RETRIES: "1" } });
    t.llm.faults.push({ hang: true });
    const r = await ask("alice", "hello?");
    expect(r).toMatchObject({ status: "done", reply: "echo: hello?" });
  });

  it("never passes a reply cut off by the timeout for a whole one", async () => {
    // A reply still streaming at the attempt's timeout must fail (and be retried), not be
    // stored half-written (the SDK's own stream reader ended quietly on an abort).
    t = await startTestGateway({
      env: { ZEPTOCLAW_LLM_TIMEOUT_MS: "300", ZEPTOCLAW_LLM_MAX_RETRIES: "0" },
      llm: { chunkSize: 1, chunkDelayMs: 40 },
    });
    const r = await ask("alice", "a reply that streams slowly");
    expect(r.status).toBe("error");
    expect(r.reply).toBeUndefined();
    expect(capturedLogs.join("\n")).toContain("E_LLM_TIMEOUT");
  });

  it("gives a clear error reply, logged with the message id, when retries are spent", async () => {
    t = await startTestGateway({ env: { ZEPTOCLAW_LLM_MAX_RETRIES: "1" } });
    t.llm.faults.push({ status: 500 }, { status: 500 }, { status: 500 });
    const r = await ask("alice", "anyone?");
    expect(r.status).toBe("error");
    expect(r.error).toMatch(/could not get an answer.*HTTP 500/);
    expect(t.llm.count).toBe(2);
    expect(capturedLogs.some((l) => l.includes(r.id) && l.includes("LLM failed after retries"))).toBe(true);
  });

  it("does not retry a rejected API key and says so", async () => {
    t = await startTestGateway();
    t.llm.faults.push({ status: 401 });
    const r = await ask("alice", "hi");
    expect(r.status).toBe("error");
    expect(r.error).toMatch(/rejected the API key/);
    expect(t.llm.count).toBe(1);
  });

  it("runs a tool the LLM calls and sends it the result", async () => {
    t = await startTestGateway({
      llm: {
        answer: (req) =>
          req.messages.some((m) => m.role === "tool") ? "it is time" : { toolCalls: [{ name: "current_time", arguments: '{"time_zone":"UTC"}' }] },
      },
    });
    const r = await ask("alice", "what time is it?");
    expect(r.reply).toBe("it is time");
    const second = t.llm.requests[1];
    const toolMsg = second?.messages.find((m) => m.role === "tool");
    expect(JSON.parse(toolMsg?.content ?? "{}")).toHaveProperty("utc");
    expect(t.llm.requests[0]?.tools?.map((x) => x.function.name)).toContain("current_time");
  });

  it("keeps history per user, pruned to max_session_messages", async () => {
    t = await startTestGateway({ env: { ZEPTOCLAW_SESSION_MAX_SESSION_MESSAGES: "4" } });
    for (let i = 1; i <= 4; i++) await ask("alice", `q${i}`);
    const last = t.llm.requests.at(-1)!;
    // system + the 4 newest history messages (q2,a2,q3,a3) + the new question.
    expect(last.messages.map((m) => m.content)).toEqual([t.config.agent.system_prompt, "q2", "echo: q2", "q3", "echo: q3", "q4"]);
  });

  it("never shows one user's history to another", async () => {
    t = await startTestGateway();
    await ask("alice", "my password is swordfish");
    await ask("bob", "what did I say before?");
    const bobs = t.llm.requests.at(-1)!;
    expect(JSON.stringify(bobs.messages)).not.toContain("swordfish");
    expect(bobs.messages.filter((m) => m.role === "user")).toHaveLength(1);
  });

  it("/reset forgets the session and /help answers without the LLM", async () => {
    t = await startTestGateway();
    await ask("alice", "remember banana");
    const reset = await ask("alice", "/reset");
    expect(reset.reply).toMatch(/forgot/);
    const help = await ask("alice", "/help");
    expect(help.reply).toMatch(/\/reset/);
    expect(t.llm.count).toBe(1);
    await ask("alice", "what fruit?");
    expect(JSON.stringify(t.llm.requests.at(-1)!.messages)).not.toContain("banana");
  });

  it("without an LLM configured, starts and tells exactly what to set", async () => {
    t = await startTestGateway({ env: { ZEPTOCLAW_LLM_BASE_URL: "https://api.openai.com/v1", ZEPTOCLAW_LLM_API_KEY: "" } });
    const r = await ask("alice", "hi");
    expect(r.status).toBe("error");
    expect(r.error).toMatch(/OPENAI_API_KEY/);
    expect(r.error).toMatch(/llm\.base_url/);
    const status = (await (await fetch(`${t.base}/api/status`)).json()) as { llmConfigured: boolean; hint: string };
    expect(status.llmConfigured).toBe(false);
    expect(status.hint).toMatch(/Ollama/);
    expect(capturedLogs.some((l) => l.includes("No LLM is configured"))).toBe(true);
    expect(t.llm.count).toBe(0);
  });

  it("enforces the daily token budget before each call and shows it with /usage", async () => {
    t = await startTestGateway({ env: { ZEPTOCLAW_LIMITS_DAILY_TOKENS_PER_USER: "1" } });
    expect((await ask("alice", "first")).status).toBe("done");
    const refused = await ask("alice", "second");
    expect(refused.status).toBe("error");
    expect(refused.error).toMatch(/allowance of 1 tokens/);
    expect(t.llm.count).toBe(1);
    const usage = await ask("alice", "/usage");
    expect(usage.reply).toMatch(/^Today you used \d+ of your 1 tokens/);
    expect(Number(/used (\d+)/.exec(usage.reply ?? "")?.[1])).toBeGreaterThan(1);
    // Another user has their own allowance.
    expect((await ask("bob", "hi")).status).toBe("done");
  });

  it("counts the tokens of attempts cut off mid-answer against the budget", async () => {
    // A model too slow to finish within the timeout: every attempt streams for 300 ms, then is cut off.
    t = await startTestGateway({
      env: { ZEPTOCLAW_LIMITS_DAILY_TOKENS_PER_USER: "150", ZEPTOCLAW_LLM_TIMEOUT_MS: "300", ZEPTOCLAW_LLM_MAX_RETRIES: "0" },
      llm: { chunkSize: 20, chunkDelayMs: 20, answer: () => "word ".repeat(160) },
    });
    for (let i = 0; i < 6 && t.llm.count < 6; i++) await ask("mallory", `tell me a long story ${i}`);
    const usage = await ask("mallory", "/usage");
    expect(Number(/used (\d+)/.exec(usage.reply ?? "")?.[1])).toBeGreaterThan(50);
    // Before long the allowance is spent and the provider is no longer asked.
    const calls = t.llm.count;
    expect(calls).toBeLessThan(6);
    expect((await ask("mallory", "one more")).error).toMatch(/allowance of 150 tokens/);
    expect(t.llm.count).toBe(calls);
  });
});
