import type { Logger } from "pino";
import type { HttpRoutes } from "../http/http-server.js";
import type { ChannelId, InboundMessage, OutboundMessage } from "../messages.js";

/** What pairing answered for a user the allowlist keeps out. */
export type PairingAnswer = { status: "approved" } | { status: "pending"; code: string } | { status: "full" };

/** What a channel gets when it starts. */
export interface ChannelContext {
  /** Hands a message to the bus; resolves once accepted, rejects with `BusFullError` when full. */
  publish(m: InboundMessage): Promise<void>;
  logger: Logger;
  signal: AbortSignal;
  /** The gateway's HTTP server, for channels that serve endpoints (web chat, webhooks). */
  http: HttpRoutes;
  /**
   * Set when pairing is on for this channel: a user the allowlist keeps out gets a one-time
   * code the operator approves with `zeptoclaw pair approve CODE`.
   */
  pair?(userId: string, name: string): Promise<PairingAnswer>;
  /**
   * Takes one from `userId`'s flood allowance for an answer the channel gives by itself (a
   * sticker's "I can only read text"); false when the user is over it: answer nothing. Absent
   * means no limit.
   */
  mayAnswer?(userId: string): boolean;
}

/** A platform adapter: platform events in, platform calls out. Never touches sessions or the LLM. */
export interface Channel {
  readonly id: ChannelId;
  readonly limits: { maxTextLength: number; canEdit: boolean; canType: boolean };
  /**
   * False when a reply's outcome stays readable by message id (the web chat), so a reply
   * finished before a crash is not pushed again after it. Platforms leave it unset (true).
   */
  readonly resendAfterCrash?: boolean;
  start(ctx: ChannelContext): Promise<void>;
  stop(): Promise<void>;
  send(m: OutboundMessage): Promise<{ messageId: string }>;
  edit?(conversationId: string, messageId: string, text: string): Promise<void>;
  typing?(conversationId: string): Promise<void>;
  /**
   * A piece of a reply still being generated for `replyToId`; `null` means the stream
   * restarted and what was shown must be discarded.
   */
  preview?(conversationId: string, replyToId: string, chunk: string | null): void;
}
