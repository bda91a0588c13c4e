import { afterEach, describe, expect, it } from "vitest";
import { GatewayHttpServer } from "../../src/http/http-server.js";
import { registerAdminRoutes } from "../../src/observability/admin-routes.js";
import { createPromMetrics } from "../../src/observability/metrics.js";
import { captureLogger, startTestGateway, type TestGateway } from "../support/harness.js";

let t: TestGateway | undefined;
let admin: GatewayHttpServer | undefined;
afterEach(async () => {
  await admin?.close();
  await t?.close();
  admin = undefined;
  t = undefined;
});

/** The admin routes on a server of their own, until the gateway serves them itself. */
async function startAdmin(registry: ReturnType<typeof createPromMetrics>["registry"]): Promise<string> {
  admin = new GatewayHttpServer(captureLogger());
  registerAdminRoutes(admin, { registry, adminToken: "" });
  return `http://127.0.0.1:${await admin.listen(0, "127.0.0.1")}`;
}

/** Polls `/metrics` until `pattern` shows up (gauges are sampled once a second). */
async function scrapeUntil(base: string, pattern: RegExp, timeoutMs = 5_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = await (await fetch(`${base}/metrics`)).text();
    if (pattern.test(text) || Date.now() > deadline) return text;
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("Prometheus metrics", () => {
  it("records every GatewayMetrics call as a series", async () => {
    const { metrics, registry } = createPromMetrics();
    metrics.inbound("webchat");
    metrics.inbound("telegram");
    metrics.refused("webchat", "bus_full");
    metrics.outbound("webchat", false, 120);
    metrics.outbound("webchat", true, 3_000);
    metrics.llmCall("api.openai.com", 800, { prompt: 10, completion: 5 });
    metrics.llmCall("api.openai.com", 0, undefined, "llm_rate_limited");
    metrics.retry("llm");
    metrics.deadLetter("webchat");
    metrics.setGauges({ busDepth: 7, activeUsers: 3 });
    const text = await registry.metrics();
    expect(text).toContain('zeptoclaw_messages_in_total{channel="webchat"} 1');
    expect(text).toContain('zeptoclaw_messages_in_total{channel="telegram"} 1');
    expect(text).toContain('zeptoclaw_messages_refused_total{channel="webchat",reason="bus_full"} 1');
    expect(text).toContain('zeptoclaw_messages_out_total{channel="webchat",outcome="ok"} 1');
    expect(text).toContain('zeptoclaw_messages_out_total{channel="webchat",outcome="error"} 1');
    expect(text).toContain('zeptoclaw_reply_latency_seconds_bucket{le="0.25",channel="webchat"} 1');
    expect(text).toContain('zeptoclaw_reply_latency_seconds_count{channel="webchat"} 2');
    expect(text).toContain('zeptoclaw_llm_latency_seconds_count{provider="api.openai.com",outcome="ok"} 1');
    expect(text).toContain('zeptoclaw_llm_tokens_total{provider="api.openai.com",kind="prompt"} 10');
    expect(text).toContain('zeptoclaw_llm_tokens_total{provider="api.openai.com",kind="completion"} 5');
    expect(text).toContain('zeptoclaw_llm_errors_total{provider="api.openai.com",error="llm_rate_limited"} 1');
    expect(text).toContain('zeptoclaw_retries_total{kind="llm"} 1');
    expect(text).toContain('zeptoclaw_dead_letters_total{channel="webchat"} 1');
    expect(text).toContain("zeptoclaw_bus_depth 7");
    expect(text).toContain("zeptoclaw_active_users 3");
    expect(text).toMatch(/^process_resident_memory_bytes \d+/m);
    expect(text).toMatch(/^nodejs_heap_size_used_bytes \d+/m);
  });

  it("keeps each registry separate, so several gateways can share a process", async () => {
    const a = createPromMetrics();
    const b = createPromMetrics();
    a.metrics.inbound("webchat");
    expect(await a.registry.metrics()).toContain('zeptoclaw_messages_in_total{channel="webchat"} 1');
    expect(await b.registry.metrics()).not.toContain('zeptoclaw_messages_in_total{channel="webchat"}');
  });

  it("bounds free-form labels and never throws on odd numbers", async () => {
    const { metrics, registry } = createPromMetrics();
    for (let i = 0; i < 100; i++) metrics.refused("webchat", `reason ${i} with "quotes"\n`);
    metrics.llmCall("p", Number.NaN, { prompt: -5, completion: Number.POSITIVE_INFINITY });
    metrics.outbound("webchat", false, -10);
    const text = await registry.metrics();
    const reasons = text.split("\n").filter((l) => l.startsWith("zeptoclaw_messages_refused_total{"));
    expect(reasons.length).toBeLessThanOrEqual(33);
    expect(text).toContain('reason="other"} 68');
    expect(text).toContain('reason="reason_0_with_quotes_"} 1');
    expect(text).toContain('zeptoclaw_llm_tokens_total{provider="p",kind="prompt"} 0');
  });

  it("shows the series on GET /metrics after web chat messages flow through a real gateway", async () => {
    const { metrics, registry } = createPromMetrics();
    t = await startTestGateway({ gateway: { metrics }, env: { ZEPTOCLAW_LLM_MAX_RETRIES: "2" } });
    const base = await startAdmin(registry);
    // The first LLM call is rate limited once (a retry), then refused for good (an error reply).
    t.llm.faults.push({ status: 429, retryAfter: 0 }, { status: 400, message: "bad request" });
    const failed = await t.post("alice", "first");
    expect((await t.result(failed.body.id as string)).status).toBe("error");
    for (const text of ["two", "three", "four"]) {
      const { body } = await t.post("bob", text);
      expect((await t.result(body.id as string)).status).toBe("done");
    }
    const res = await fetch(`${base}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await scrapeUntil(base, /^zeptoclaw_bus_depth 0$/m);
    const provider = new URL(t.llm.url).host;
    expect(text).toContain('zeptoclaw_messages_in_total{channel="webchat"} 4');
    expect(text).toContain('zeptoclaw_messages_out_total{channel="webchat",outcome="ok"} 3');
    expect(text).toContain('zeptoclaw_messages_out_total{channel="webchat",outcome="error"} 1');
    expect(text).toContain('zeptoclaw_reply_latency_seconds_count{channel="webchat"} 4');
    expect(text).toContain(`zeptoclaw_llm_latency_seconds_count{provider="${provider}",outcome="ok"} 3`);
    expect(text).toMatch(new RegExp(`zeptoclaw_llm_errors_total\\{provider="${provider}",error="[a-z0-9_]+"\\} 1`));
    expect(text).toContain('zeptoclaw_retries_total{kind="llm"} 1');
    expect(text).toContain('zeptoclaw_dead_letters_total{channel="webchat"} 1');
    expect(text).toMatch(/^zeptoclaw_bus_depth 0$/m);
    expect(text).toMatch(/^zeptoclaw_active_users \d+$/m);
    expect(text).not.toContain("sk-test-secret-key-123456");
  });

  it("counts refusals when the bus is full", async () => {
    const { metrics, registry } = createPromMetrics();
    t = await startTestGateway({ gateway: { metrics }, env: { ZEPTOCLAW_BUS_BUFFER_SIZE: "1", ZEPTOCLAW_BUS_MAX_CONCURRENCY: "1" }, llm: { latencyMs: 200 } });
    const a = await t.post("a", "one");
    const b = await t.post("b", "two");
    expect([a.status, b.status]).toEqual([202, 503]);
    expect(await registry.metrics()).toContain('zeptoclaw_messages_refused_total{channel="webchat",reason="bus_full"} 1');
    await t.result(a.body.id as string);
  });
});
