import type { InboundMessage } from "../messages.js";

/** How the agent hands its reply back, without knowing any platform. */
export interface ReplySink {
  /** A piece of streamed reply text for `m`. */
  delta(m: InboundMessage, text: string): void;
  /** The stream for `m` broke and starts over: discard the pieces sent so far. */
  restart(m: InboundMessage): void;
  /** The finished reply (or a clear error text); resolves once delivered. */
  final(m: InboundMessage, text: string, isError: boolean): Promise<void>;
}
