import { join } from "node:path";
import { pino } from "pino";
import type { LlmClient, LlmRequest, LlmResponse } from "../../src/agent/llm-types.js";
import type { Channel } from "../../src/channels/types.js";
import { loadConfig } from "../../src/config/load.js";
import { type Gateway, startGateway } from "../../src/gateway.js";
import type { InboundMessage, OutboundMessage } from "../../src/messages.js";
import { createLogger } from "../../src/observability/logger.js";
import { forceGc } from "../gc.js";
import { DEFAULT_SETTLE_S } from "../options.js";
import type { BenchTarget, DeliveredReply, TargetSettings } from "./target.js";

const CONVERSATION_PREFIX = "webchat:bench-";
const SETTLE_STEP_MS = 250;
const SETTLE_MIN_MS = DEFAULT_SETTLE_S * 1000;
const SETTLE_MAX_MS = 20_000;
const SETTLE_TOLERANCE_BYTES = 1024 * 1024;

/** An in-process LLM that echoes the last user message after `latencyMs`, streaming it as one delta. */
function echoLlm(latencyMs: number): LlmClient {
  return {
    configured: true,
    async complete(req: LlmRequest): Promise<LlmResponse> {
      const started = performance.now();
      if (latencyMs > 0) await new Promise((r) => setTimeout(r, latencyMs));
      let last = "";
      for (let i = req.messages.length - 1; i >= 0; i--) {
        const m = req.messages[i];
        if (m?.role === "user") {
          last = m.content ?? "";
          break;
        }
      }
      const text = `echo: ${last}`;
      req.onDelta?.(text);
      return { text, toolCalls: [], llmMs: performance.now() - started };
    },
  };
}

/**
 * The in-process path: the real gateway (bus, agent, SQLite sessions, HTTP server) with a
 * stand-in channel that publishes as a platform channel would and records delivered replies.
 * Memory and CPU figures are of this whole process, load generator included.
 */
export async function startInprocTarget(s: TargetSettings): Promise<BenchTarget> {
  const { config } = loadConfig({
    env: {
      ZEPTOCLAW_HTTP_PORT: "0",
      ZEPTOCLAW_SESSION_STORE: `sqlite://${join(s.dir, "sessions.sqlite")}`,
      ZEPTOCLAW_LLM_BASE_URL: "http://127.0.0.1:9/v1",
      ZEPTOCLAW_LLM_REQUESTS_PER_MINUTE: "0",
      // The bench measures the pipeline, not the per-user flood limit.
      ZEPTOCLAW_LIMITS_MESSAGES_PER_MINUTE: "0",
      ZEPTOCLAW_BUS_BUFFER_SIZE: String(s.busBufferSize),
      ZEPTOCLAW_LOG_LEVEL: "warn",
    },
  });
  const logger = createLogger({ level: config.log.level, destination: pino.destination({ dest: 2, sync: false }) });
  const llmTimes = new Map<string, number>();
  let deliver: (r: DeliveredReply) => void = () => undefined;
  const channel: Channel = {
    id: "webchat",
    limits: { maxTextLength: Number.MAX_SAFE_INTEGER, canEdit: false, canType: false },
    async start() {},
    async stop() {},
    async send(m: OutboundMessage) {
      const user = Number(m.conversationId.slice(CONVERSATION_PREFIX.length));
      deliver({ user, id: m.replyToId ?? "", at: performance.now(), isError: m.isError === true });
      return { messageId: m.idempotencyKey };
    },
    preview() {},
  };
  const gw: Gateway = await startGateway({
    config,
    logger,
    llm: echoLlm(s.llmLatencyMs),
    channels: [channel],
    onLlmDone: (m, ms) => llmTimes.set(m.id, (llmTimes.get(m.id) ?? 0) + ms),
  });
  const cpuStart = process.cpuUsage();
  let seq = 0;
  const target: BenchTarget = {
    onReply: () => undefined,
    async send(user, text) {
      const conversationId = `${CONVERSATION_PREFIX}${user}`;
      const m: InboundMessage = {
        id: `webchat:b${++seq}`,
        channel: "webchat",
        conversationId,
        userId: conversationId,
        sender: { id: `bench-${user}`, isBot: false },
        text,
        isDirect: true,
        mentionsBot: true,
        attachments: [],
        receivedAt: Date.now(),
      };
      await gw.publish(m);
      return m.id;
    },
    llmMs(id) {
      const ms = llmTimes.get(id) ?? 0;
      llmTimes.delete(id);
      return ms;
    },
    rssBytes: () => process.memoryUsage.rss(),
    cpuSeconds() {
      const u = process.cpuUsage(cpuStart);
      return (u.user + u.system) / 1e6;
    },
    async settle() {
      // After a busy run V8 gives freed pages back from a background thread, compacts a
      // fragmented old space a little more at each full GC, and shrinks the young generation
      // once allocation has been low for the 5 s it averages over. A reading right after one
      // GC still counted up to 120 MB of garbage already collected (10,000 users), and how
      // much depended on timing. Settled means RSS stopped moving: collect, wait, read again.
      await gw.stores.flush();
      const minMs = Number.isFinite(s.settleMinMs) ? (s.settleMinMs as number) : SETTLE_MIN_MS;
      const started = performance.now();
      let previous = Number.POSITIVE_INFINITY;
      let still = 0;
      for (;;) {
        forceGc();
        await new Promise((r) => setTimeout(r, SETTLE_STEP_MS));
        const rss = process.memoryUsage.rss();
        still = Math.abs(previous - rss) < SETTLE_TOLERANCE_BYTES ? still + 1 : 0;
        previous = rss;
        const elapsed = performance.now() - started;
        if ((elapsed >= minMs && still >= 3) || elapsed >= Math.max(minMs, SETTLE_MAX_MS)) break;
      }
      await gw.stores.flush();
    },
    details: () => ({ hot_sessions: gw.stores.sessions.hot, gateway_process: "same as load generator" }),
    async close() {
      await gw.close();
      logger.flush();
    },
  };
  deliver = (r) => target.onReply(r);
  return target;
}
