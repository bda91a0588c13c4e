import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { ChannelId } from "../messages.js";
import type { GatewayMetrics } from "./metrics-types.js";

/** Seconds; from an instant fake LLM (a few ms) up to a slow model with tool rounds (2 min). */
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120];

/** At most this many distinct values per free-form label (reasons, error codes, retry kinds). */
const MAX_LABEL_VALUES = 32;

/**
 * Keeps a free-form label bounded: short, `[a-z0-9_.:-]`, and past `MAX_LABEL_VALUES` distinct
 * values everything new becomes "other", so a caller bug cannot blow up the series count.
 */
function labelGuard(): (value: string) => string {
  const seen = new Set<string>();
  return (value) => {
    const clean = value.toLowerCase().replace(/[^a-z0-9_.:-]+/g, "_").slice(0, 48) || "unknown";
    if (seen.has(clean)) return clean;
    if (seen.size >= MAX_LABEL_VALUES) return "other";
    seen.add(clean);
    return clean;
  };
}

/** prom-client throws on a negative counter step or a NaN observation: a metrics bug must not fail a reply. */
function finite(n: number): number {
  return Number.isFinite(n) && n > 0 ? n : 0;
}

/** Prometheus metrics for the gateway, on a registry of their own (several gateways may share a process). */
export function createPromMetrics(): { metrics: GatewayMetrics; registry: Registry } {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];

  const messagesIn = new Counter({
    name: "zeptoclaw_messages_in_total",
    help: "Messages accepted by the bus, per channel.",
    labelNames: ["channel"] as const,
    registers,
  });
  const refused = new Counter({
    name: "zeptoclaw_messages_refused_total",
    help: "Messages refused before the bus (flood limit, access, bus full), per channel and reason.",
    labelNames: ["channel", "reason"] as const,
    registers,
  });
  const messagesOut = new Counter({
    name: "zeptoclaw_messages_out_total",
    help: "Replies delivered, per channel; outcome is ok or error (an error reply).",
    labelNames: ["channel", "outcome"] as const,
    registers,
  });
  const replyLatency = new Histogram({
    name: "zeptoclaw_reply_latency_seconds",
    help: "Time from acceptance to reply delivery, per channel.",
    labelNames: ["channel"] as const,
    buckets: LATENCY_BUCKETS,
    registers,
  });
  const llmLatency = new Histogram({
    name: "zeptoclaw_llm_latency_seconds",
    help: "Duration of one LLM call (retries included), per provider and outcome.",
    labelNames: ["provider", "outcome"] as const,
    buckets: LATENCY_BUCKETS,
    registers,
  });
  const llmTokens = new Counter({
    name: "zeptoclaw_llm_tokens_total",
    help: "Tokens reported by the LLM, per provider and kind (prompt or completion).",
    labelNames: ["provider", "kind"] as const,
    registers,
  });
  const llmErrors = new Counter({
    name: "zeptoclaw_llm_errors_total",
    help: "LLM calls that failed for good, per provider and error code.",
    labelNames: ["provider", "error"] as const,
    registers,
  });
  const retries = new Counter({
    name: "zeptoclaw_retries_total",
    help: "Retries, per kind (llm, telegram, ...).",
    labelNames: ["kind"] as const,
    registers,
  });
  const deadLetters = new Counter({
    name: "zeptoclaw_dead_letters_total",
    help: "Messages that ended with an error reply after every retry, per channel.",
    labelNames: ["channel"] as const,
    registers,
  });
  const busDepth = new Gauge({ name: "zeptoclaw_bus_depth", help: "Messages accepted and not yet finished.", registers });
  const activeUsers = new Gauge({ name: "zeptoclaw_active_users", help: "Users with a hot session in memory.", registers });

  const reason = labelGuard();
  const errorCode = labelGuard();
  const retryKind = labelGuard();
  const providerName = labelGuard();

  const metrics: GatewayMetrics = {
    inbound(channel: ChannelId) {
      messagesIn.inc({ channel });
    },
    refused(channel, why) {
      refused.inc({ channel, reason: reason(why) });
    },
    outbound(channel, isError, latencyMs) {
      messagesOut.inc({ channel, outcome: isError ? "error" : "ok" });
      replyLatency.observe({ channel }, finite(latencyMs) / 1000);
    },
    llmCall(providerHost, ms, tokens, error) {
      const provider = providerName(providerHost);
      // A failure reported with no duration (after every retry) would pile up in the lowest bucket.
      if (error === undefined || ms > 0) llmLatency.observe({ provider, outcome: error === undefined ? "ok" : "error" }, finite(ms) / 1000);
      if (tokens) {
        llmTokens.inc({ provider, kind: "prompt" }, finite(tokens.prompt));
        llmTokens.inc({ provider, kind: "completion" }, finite(tokens.completion));
      }
      if (error !== undefined) llmErrors.inc({ provider, error: errorCode(error) });
    },
    retry(kind) {
      retries.inc({ kind: retryKind(kind) });
    },
    deadLetter(channel) {
      deadLetters.inc({ channel });
    },
    setGauges(g) {
      busDepth.set(g.busDepth);
      activeUsers.set(g.activeUsers);
    },
  };
  return { metrics, registry };
}
