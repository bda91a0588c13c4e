import type { ChannelId } from "../messages.js";

/** What the gateway reports as it works; the Prometheus implementation lives in metrics.ts. */
export interface GatewayMetrics {
  /** A message was accepted by the bus. */
  inbound(channel: ChannelId): void;
  /** A message was refused before the bus (flood limit, access, bus full). */
  refused(channel: ChannelId, reason: string): void;
  /** A reply was delivered; `latencyMs` runs from acceptance to delivery. */
  outbound(channel: ChannelId, isError: boolean, latencyMs: number): void;
  /** One LLM call finished (`error` set when it failed for good). */
  llmCall(provider: string, ms: number, tokens: { prompt: number; completion: number } | undefined, error?: string): void;
  /** A retry happened (`llm`, `telegram`, ...). */
  retry(kind: string): void;
  /** A message ended in the dead-letter state (error reply after every retry). */
  deadLetter(channel: ChannelId): void;
  /** Sampled gauges: bus depth, users with a hot session. */
  setGauges(g: { busDepth: number; activeUsers: number }): void;
}

/** Metrics that record nothing: for tools that run without an admin endpoint. */
export const noMetrics: GatewayMetrics = {
  inbound() {},
  refused() {},
  outbound() {},
  llmCall() {},
  retry() {},
  deadLetter() {},
  setGauges() {},
};
