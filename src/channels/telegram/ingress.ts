import type { Update } from "grammy/types";
import type { Logger } from "pino";
import { BusFullError, RefusedError } from "../../errors.js";
import type { InboundMessage } from "../../messages.js";
import type { PairingAnswer } from "../types.js";
import type { TelegramSender } from "./access.js";
import { BoundedSet } from "./bounded.js";
import { parseConversationId } from "./ids.js";
import { type BotIdentity, type Normalized, type NoticeTarget, normalizeUpdate } from "./normalize.js";

/** Said once to a user that `allow_from` / `deny_by_default` keeps out. */
export function refusalText(userId: number): string {
  return `Sorry, you are not allowed to use this bot. If you know its owner, ask them to add your Telegram user id (${userId}) to channels.telegram.allow_from.`;
}

/** Said to a user the allowlist keeps out while pairing is on. */
export function pairingText(code: string): string {
  return `This bot is private. To get in, give this code to its owner: ${code}\nThey approve it with: zeptoclaw pair approve ${code}\n(The code expires in an hour.)`;
}

/** Said when the bus is full and the message could not be taken. */
export const BUSY_TEXT = "I'm busy right now, please try again in a moment.";

/** What the ingress needs from the channel around it. */
export interface IngressDeps {
  me: BotIdentity;
  groupMode: "mention" | "all";
  allowed(from: TelegramSender): boolean;
  publish(m: InboundMessage): Promise<void>;
  /** Sends a short answer without holding up the update loop. */
  notify(target: NoticeTarget, text: string, idempotencyKey: string): void;
  /** Pairing for users the allowlist keeps out, when it is on. */
  pair?: (userId: string, name: string) => Promise<PairingAnswer>;
  /** Takes one from the user's flood allowance for a notice; false: send none. */
  mayAnswer(userId: string): boolean;
  /** Called for every update from a chat, so a chat that blocked the bot is tried again. */
  seenChat(chatId: number): void;
  logger: Logger;
}

/**
 * Where every update goes, polled or pushed: dedupe by update id, normalize, enforce access
 * (one refusal per user), answer what cannot be read, and publish the rest. Resolves once the
 * bus accepted the message (or it was answered directly); rejects only when the bus refused it
 * for a reason other than being full, so the caller leaves the update unconfirmed.
 */
export class TelegramIngress {
  private readonly seen = new BoundedSet<number>(10_000);
  private readonly refused = new BoundedSet<number>(10_000);
  private readonly codesSent = new BoundedSet<string>(10_000);

  constructor(private readonly deps: IngressDeps) {}

  /**
   * For a user the allowlist keeps out, with pairing on: "approved" when the operator let
   * them in; "told" after giving them their code (once per code); "refuse" when pairing is
   * off or no more codes may wait.
   */
  private async pairing(n: Exclude<Normalized, { kind: "ignore" }>, updateId: number): Promise<"approved" | "told" | "refuse"> {
    if (!this.deps.pair) return "refuse";
    const name = n.kind === "message" ? (n.message.sender.name ?? "") : (n.from.username ?? "");
    const answer = await this.deps.pair(`telegram:${n.from.id}`, name);
    if (answer.status !== "pending") return answer.status === "approved" ? "approved" : "refuse";
    const target = n.kind === "message" ? { conversationId: n.message.conversationId, replyToId: n.message.id } : n.target;
    const first = this.codesSent.add(`${n.from.id}:${answer.code}`);
    this.deps.logger.info({ updateId, fromId: n.from.id, told: first }, "Telegram user waiting for pairing approval");
    if (first) this.deps.notify(target, pairingText(answer.code), `pairing:${n.from.id}:${answer.code}`);
    return "told";
  }

  async handle(update: Update): Promise<void> {
    // Marked first so a webhook redelivery racing the original is dropped; unmarked on failure.
    if (!this.seen.add(update.update_id)) return;
    try {
      await this.route(update);
    } catch (err) {
      this.seen.delete(update.update_id);
      throw err;
    }
  }

  private async route(update: Update): Promise<void> {
    const log = this.deps.logger;
    let n: Normalized;
    try {
      n = normalizeUpdate(update, this.deps.me, this.deps.groupMode);
    } catch (err) {
      // Telegram never sends these, but a forged or truncated body must not wedge the loop.
      log.warn({ updateId: update.update_id, err }, "malformed Telegram update ignored");
      return;
    }
    if (n.kind === "ignore") {
      log.debug({ updateId: update.update_id, reason: n.reason }, "Telegram update ignored");
      return;
    }
    const pairing = this.deps.allowed(n.from) ? "approved" : await this.pairing(n, update.update_id);
    if (pairing === "told") return;
    if (pairing === "refuse") {
      const first = this.refused.add(n.from.id);
      log.info({ updateId: update.update_id, fromId: n.from.id, told: first }, "Telegram user not in allow_from; refused");
      if (first) this.deps.notify(n.kind === "message" ? { conversationId: n.message.conversationId, replyToId: n.message.id } : n.target, refusalText(n.from.id), `refusal:${n.from.id}`);
      return;
    }
    // The chat wrote to the bot, so it does not block it (any more).
    const target = parseConversationId(n.kind === "message" ? n.message.conversationId : n.target.conversationId);
    if (target) this.deps.seenChat(target.chatId);
    if (n.kind === "notice") {
      if (!this.deps.mayAnswer(`telegram:${n.from.id}`)) {
        log.info({ updateId: update.update_id, fromId: n.from.id }, "flood limit: no notice for this update");
        return;
      }
      this.deps.notify(n.target, n.text, `${n.target.replyToId}:notice:${update.update_id}`);
      return;
    }
    try {
      await this.deps.publish(n.message);
    } catch (err) {
      if (err instanceof RefusedError) {
        // The gateway refused it (flood limit) and told the user itself when it should.
        log.info({ msgId: n.message.id, reason: err.reason }, "Telegram message refused by the gateway");
        return;
      }
      if (!(err instanceof BusFullError)) throw err;
      log.warn({ msgId: n.message.id }, "bus full; told the sender to try again");
      this.deps.notify({ conversationId: n.message.conversationId, replyToId: n.message.id }, BUSY_TEXT, `${n.message.id}:busy`);
      return;
    }
    log.debug({ msgId: n.message.id }, "Telegram message accepted");
  }
}
