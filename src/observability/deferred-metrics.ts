import type { GatewayMetrics } from "./metrics-types.js";

/**
 * Metrics whose implementation arrives after start: prom-client takes tens of milliseconds
 * to load, and readiness should not wait for it. Calls before it arrives are dropped; the
 * gauges catch up on their next sample.
 */
export class DeferredMetrics implements GatewayMetrics {
  private inner: GatewayMetrics | undefined;

  /** Hands over the real implementation. */
  attach(inner: GatewayMetrics): void {
    this.inner = inner;
  }

  inbound(...a: Parameters<GatewayMetrics["inbound"]>): void {
    this.inner?.inbound(...a);
  }
  refused(...a: Parameters<GatewayMetrics["refused"]>): void {
    this.inner?.refused(...a);
  }
  outbound(...a: Parameters<GatewayMetrics["outbound"]>): void {
    this.inner?.outbound(...a);
  }
  llmCall(...a: Parameters<GatewayMetrics["llmCall"]>): void {
    this.inner?.llmCall(...a);
  }
  retry(...a: Parameters<GatewayMetrics["retry"]>): void {
    this.inner?.retry(...a);
  }
  deadLetter(...a: Parameters<GatewayMetrics["deadLetter"]>): void {
    this.inner?.deadLetter(...a);
  }
  setGauges(...a: Parameters<GatewayMetrics["setGauges"]>): void {
    this.inner?.setGauges(...a);
  }
}
