import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { pino, type Logger } from "pino";
import { loadConfig } from "../../src/config/load.js";
import type { Config } from "../../src/config/schema.js";
import { type Gateway, type GatewayOptions, startGateway } from "../../src/gateway.js";
import type { InboundMessage } from "../../src/messages.js";
import { createLogger } from "../../src/observability/logger.js";
import { type FakeOpenAi, type FakeOpenAiOptions, startFakeOpenAi } from "./fake-openai.js";

/** Every log line written during the test run, for assertions (secrets, message ids). */
export const capturedLogs: string[] = [];

/** A logger that keeps its lines in `capturedLogs` instead of printing them. */
export function captureLogger(secrets: string[] = []): Logger {
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      capturedLogs.push(chunk.toString("utf8"));
      done();
    },
  });
  return createLogger({ level: "debug", secrets, destination: sink as unknown as pino.DestinationStream });
}

/** A fresh temporary folder, removed by the returned cleanup. */
export function tempDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), "zeptoclaw-test-"));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A web chat message from "ann" with the given id, as a channel puts it on the bus. */
export function webchatMessage(id: string, text = "hi"): InboundMessage {
  return {
    id,
    channel: "webchat",
    conversationId: "webchat:ann",
    userId: "webchat:ann",
    sender: { id: "ann", isBot: false },
    text,
    isDirect: true,
    mentionsBot: true,
    attachments: [],
    receivedAt: 0,
  };
}

/** A running gateway on a random port with a fake LLM and a temp SQLite file. */
export interface TestGateway {
  gw: Gateway;
  llm: FakeOpenAi;
  config: Config;
  base: string;
  dir: string;
  /** Posts a web chat message; returns the HTTP status and body. */
  post(user: string, text: string): Promise<{ status: number; body: { id?: string; error?: string } }>;
  /** Polls `GET /api/messages/:id` until it is no longer pending. */
  result(id: string, timeoutMs?: number): Promise<{ status: string; reply?: string; error?: string }>;
  close(): Promise<void>;
}

/** Starts a fake LLM and a gateway wired to it; `env` overrides config keys as the CLI would. */
export async function startTestGateway(
  opts: { env?: Record<string, string>; llm?: FakeOpenAiOptions; dir?: string; gateway?: Partial<GatewayOptions> } = {},
): Promise<TestGateway> {
  const llm = await startFakeOpenAi(opts.llm);
  const tmp = opts.dir ? { dir: opts.dir, cleanup: () => undefined } : tempDir();
  const { config, secrets } = loadConfig({
    env: {
      ZEPTOCLAW_LLM_BASE_URL: llm.url,
      ZEPTOCLAW_LLM_API_KEY: "sk-test-secret-key-123456",
      ZEPTOCLAW_HTTP_PORT: "0",
      ZEPTOCLAW_SESSION_STORE: `sqlite://${join(tmp.dir, "sessions.sqlite")}`,
      ZEPTOCLAW_LLM_REQUESTS_PER_MINUTE: "0",
      ...opts.env,
    },
  });
  const gw = await startGateway({ config, logger: captureLogger(secrets), ...opts.gateway });
  await gw.adminReady;
  const base = `http://127.0.0.1:${gw.port}`;
  return {
    gw,
    llm,
    config,
    base,
    dir: tmp.dir,
    async post(user, text) {
      const res = await fetch(`${base}/api/messages`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ user, text }),
      });
      return { status: res.status, body: (await res.json()) as { id?: string; error?: string } };
    },
    async result(id, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const res = await fetch(`${base}/api/messages/${encodeURIComponent(id)}`);
        const body = (await res.json()) as { status: string; reply?: string; error?: string };
        if (body.status !== "pending") return body;
        if (Date.now() > deadline) throw new Error(`message ${id} still pending after ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async close() {
      await gw.close();
      await llm.close();
      tmp.cleanup();
    },
  };
}

/** Counts turns of the event loop while `work` runs: work done in slices that yield shows up here. */
export async function turnsDuring(work: () => Promise<unknown>): Promise<number> {
  let turns = 0;
  let running = true;
  const spin = (): void => {
    if (!running) return;
    turns++;
    setImmediate(spin);
  };
  setImmediate(spin);
  await work();
  running = false;
  return turns;
}
