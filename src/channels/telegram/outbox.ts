import { type Api, GrammyError } from "grammy";
import type { Logger } from "pino";
import { ChannelError } from "../../errors.js";
import { BoundedMap, type BoundedSet } from "./bounded.js";
import { toChannelError, grammySignal } from "./api.js";
import { isGroupChat, type TelegramTarget } from "./ids.js";
import type { RenderedPart } from "./render.js";

/** Old-to-new ids of migrated groups kept; a few per year for most bots. */
const MAX_MIGRATED = 10_000;

/** Where a reply goes and which message it quotes. */
export interface SendTarget extends TelegramTarget {
  replyToMessageId?: number;
}

/**
 * Sends and edits rendered parts: HTML first and plain text when Telegram cannot parse the
 * HTML, groups quote the message they answer, and a chat that blocked the bot (403) is
 * logged once and then skipped until its user writes again.
 */
export class TelegramOutbox {
  /** Groups that became supergroups: old chat id to new, so later replies go straight there. */
  private readonly migrated = new BoundedMap<number, number>(MAX_MIGRATED);

  constructor(
    private readonly api: Api,
    private readonly token: string,
    private readonly logger: () => Logger,
    /** Chats that answered 403; shared by every outbox of one channel. */
    private readonly blocked: BoundedSet<number>,
  ) {}

  /** True when the chat blocked the bot and sending is pointless until it writes again. */
  isBlocked(chatId: number): boolean {
    return this.blocked.has(chatId);
  }

  /** The chat wrote to the bot again, so it no longer blocks it. */
  unblock(chatId: number): void {
    this.blocked.delete(chatId);
  }

  /** Sends one part; resolves with its Telegram message id, or undefined when the chat blocked the bot. */
  async send(target: SendTarget, part: RenderedPart, signal?: AbortSignal): Promise<number | undefined> {
    const base = {
      ...(target.threadId !== undefined ? { message_thread_id: target.threadId } : {}),
      ...(target.replyToMessageId !== undefined && isGroupChat(target.chatId)
        ? { reply_parameters: { message_id: target.replyToMessageId, allow_sending_without_reply: true } }
        : {}),
      // Answers often cite links; a preview card under each would bury the text.
      link_preview_options: { is_disabled: true },
    };
    const sendTo = async (chatId: number): Promise<number> => {
      if (part.html !== undefined) {
        try {
          return (await this.api.sendMessage(chatId, part.html, { ...base, parse_mode: "HTML" }, grammySignal(signal))).message_id;
        } catch (err) {
          if (!isParseError(err, this.token)) throw err;
          this.logger().warn({ err: toChannelError(err, this.token) }, "Telegram refused the HTML; sending plain text");
        }
      }
      return (await this.api.sendMessage(chatId, part.plain, base, grammySignal(signal))).message_id;
    };
    const chatId = this.migrated.get(target.chatId) ?? target.chatId;
    return this.guard(chatId, async () => {
      try {
        return await sendTo(chatId);
      } catch (err) {
        // "group chat was upgraded to a supergroup chat": the same conversation, a new id.
        const to = err instanceof GrammyError ? err.parameters.migrate_to_chat_id : undefined;
        if (typeof to !== "number") throw err;
        this.logger().info({ from: chatId, to }, "Telegram group became a supergroup; sending there");
        this.migrated.set(target.chatId, to);
        return sendTo(to);
      }
    });
  }

  /** Replaces the text of a message the bot sent; "not modified" counts as done. */
  async edit(target: TelegramTarget, messageId: number, part: RenderedPart, signal?: AbortSignal): Promise<void> {
    await this.guard(target.chatId, async () => {
      const call = async (html: boolean): Promise<void> => {
        const text = html && part.html !== undefined ? part.html : part.plain;
        const other = { link_preview_options: { is_disabled: true }, ...(html ? { parse_mode: "HTML" as const } : {}) };
        try {
          await this.api.editMessageText(target.chatId, messageId, text, other, grammySignal(signal));
        } catch (err) {
          const e = toChannelError(err, this.token);
          if (e.status === 400 && /message is not modified/i.test(e.message)) return;
          throw err;
        }
      };
      if (part.html !== undefined) {
        try {
          return await call(true);
        } catch (err) {
          if (!isParseError(err, this.token)) throw err;
        }
      }
      await call(false);
    });
  }

  private async guard<T>(chatId: number, run: () => Promise<T>): Promise<T | undefined> {
    try {
      return await run();
    } catch (err) {
      const e = toChannelError(err, this.token);
      if (e.status === 403) {
        if (this.blocked.add(chatId)) this.logger().warn({ chatId, reason: e.message }, "Telegram refused to deliver to this chat (403: the user blocked the bot or it was removed); not retrying");
        return undefined;
      }
      throw e;
    }
  }
}

function isParseError(err: unknown, token: string): boolean {
  const e = toChannelError(err, token);
  return e.status === 400 && /can't parse entities|unsupported start tag|can't find end tag/i.test(e.message);
}

/** A ChannelError for a conversation id that is not Telegram's. */
export function badTarget(conversationId: string): ChannelError {
  return new ChannelError("E_TELEGRAM_TARGET", `not a Telegram conversation id: ${JSON.stringify(conversationId)}`, { retryable: false });
}
