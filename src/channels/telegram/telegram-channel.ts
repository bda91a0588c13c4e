import type { Bot } from "grammy";
import { pino, type Logger } from "pino";
import type { TelegramConfig } from "../../config/schema.js";
import { ChannelError } from "../../errors.js";
import type { OutboundMessage } from "../../messages.js";
import type { Channel, ChannelContext } from "../types.js";
import { createAccessCheck } from "./access.js";
import { createTelegramApis, DEFAULT_RETRY, type TelegramApis, type TelegramRetryOptions, toChannelError, grammySignal } from "./api.js";
import { BoundedMap, BoundedSet } from "./bounded.js";
import { parseConversationId, parseMessageId } from "./ids.js";
import { TelegramIngress } from "./ingress.js";
import { ALLOWED_UPDATES, type BotIdentity, type NoticeTarget } from "./normalize.js";
import { badTarget, TelegramOutbox } from "./outbox.js";
import { runPolling } from "./polling.js";
import { type PreviewTiming, PreviewStreams } from "./preview-streams.js";
import { renderReply, TELEGRAM_MAX_TEXT } from "./render.js";
import { createWebhookHandler } from "./webhook.js";

/** Options the gateway passes besides `[channels.telegram]`; the optional ones are for tests. */
export interface TelegramChannelDeps {
  /** Webhook bodies above this get 413. */
  maxBodyBytes: number;
  retry?: Partial<TelegramRetryOptions>;
  preview?: Partial<PreviewTiming>;
  /** Long-poll wait per getUpdates, in seconds (default 30). */
  pollTimeoutSeconds?: number;
  /** First wait after a failed getUpdates, in ms (default 1000, doubling up to 60 s). */
  pollBackoffMs?: number;
}

/** The commands shown in Telegram's menu; the agent answers them (src/agent/commands.ts). */
const COMMANDS = [
  { command: "start", description: "Say hello and see what I can do" },
  { command: "help", description: "Show help" },
  { command: "reset", description: "Forget our conversation and start fresh" },
  { command: "usage", description: "Tokens you used today and your daily allowance" },
];

/** How long `stop` waits for notices (refusals, "busy") still being sent. */
const STOP_GRACE_MS = 5_000;

/** Creates the Telegram channel (grammy): long polling or webhook in, HTML replies out. */
export function createTelegramChannel(cfg: TelegramConfig, deps: TelegramChannelDeps): Channel {
  return new TelegramChannel(cfg, deps);
}

class TelegramChannel implements Channel {
  readonly id = "telegram" as const;
  readonly limits = { maxTextLength: TELEGRAM_MAX_TEXT, canEdit: true, canType: true };
  private readonly apis: TelegramApis;
  private readonly outbox: TelegramOutbox;
  private readonly streams: PreviewStreams;
  /** Stops intake (polling, the webhook's setup) at once when the channel stops. */
  private readonly controller = new AbortController();
  /** Cuts off sends still going when the channel has stopped, after their grace period. */
  private readonly sends = new AbortController();
  /** Replies already sent (or being sent), by idempotency key: a replay never sends twice. */
  private readonly delivered = new BoundedMap<string, Promise<{ messageId: string }>>(10_000);
  /** Telegram message ids of the parts of a reply sent so far, so a retry resumes after them. */
  private readonly progress = new BoundedMap<string, number[]>(10_000);
  private readonly background = new Set<Promise<void>>();
  private logger: Logger = pino({ enabled: false });
  private polling: Promise<void> | undefined;

  constructor(
    private readonly cfg: TelegramConfig,
    private readonly deps: TelegramChannelDeps,
  ) {
    if (!cfg.token) throw new ChannelError("E_TELEGRAM_CONFIG", "channels.telegram.token: required (or set TELEGRAM_BOT_TOKEN)", { retryable: false });
    this.apis = createTelegramApis(cfg.token, cfg.api_root, { ...DEFAULT_RETRY, ...deps.retry });
    const blocked = new BoundedSet<number>(10_000);
    const log = (): Logger => this.logger;
    this.outbox = new TelegramOutbox(this.apis.api, cfg.token, log, blocked);
    const quick = new TelegramOutbox(this.apis.quickApi, cfg.token, log, blocked);
    this.streams = new PreviewStreams(quick, { firstDelayMs: 1_000, intervalMs: 1_000, ...deps.preview }, log, cfg.token);
  }

  async start(ctx: ChannelContext): Promise<void> {
    this.logger = ctx.logger;
    const signal = AbortSignal.any([ctx.signal, this.controller.signal]);
    const me = await this.identify(this.apis.bot, signal);
    if (this.cfg.deny_by_default && this.cfg.allow_from.length === 0) {
      this.logger.warn("channels.telegram.deny_by_default is set and allow_from is empty: every Telegram user will be refused");
    }
    const ingress = new TelegramIngress({
      me,
      groupMode: this.cfg.group_mode,
      allowed: createAccessCheck(this.cfg.allow_from, this.cfg.deny_by_default),
      publish: (m) => ctx.publish(m),
      notify: (target, text, key) => this.notify(target, text, key),
      seenChat: (chatId) => this.outbox.unblock(chatId),
      mayAnswer: (userId) => ctx.mayAnswer?.(userId) ?? true,
      logger: this.logger,
      ...(ctx.pair ? { pair: ctx.pair } : {}),
    });
    await this.apis.api.setMyCommands(COMMANDS, {}, grammySignal(signal)).catch((err: unknown) => {
      this.logger.warn({ err: toChannelError(err, this.cfg.token) }, "could not register the bot commands with setMyCommands");
    });
    if (this.cfg.mode === "webhook") {
      await this.startWebhook(ctx, (u) => ingress.handle(u), signal);
    } else {
      // Only one consumer per token: a leftover webhook would make every getUpdates fail with 409.
      await this.apis.api.deleteWebhook({ drop_pending_updates: false }, grammySignal(signal)).catch((err: unknown) => {
        this.logger.warn({ err: toChannelError(err, this.cfg.token) }, "deleteWebhook failed before polling");
      });
      this.polling = runPolling({
        api: this.apis.api,
        token: this.cfg.token,
        handle: (u) => ingress.handle(u),
        logger: this.logger,
        signal,
        timeoutSeconds: this.deps.pollTimeoutSeconds ?? 30,
        backoffMs: this.deps.pollBackoffMs ?? 1_000,
        maxBackoffMs: 60_000,
      }).catch((err: unknown) => this.logger.error({ err: toChannelError(err, this.cfg.token) }, "Telegram polling stopped"));
    }
    this.logger.info({ mode: this.cfg.mode, bot: `@${me.username}`, groupMode: this.cfg.group_mode }, "Telegram channel started");
  }

  private async identify(bot: Bot, signal: AbortSignal): Promise<BotIdentity> {
    try {
      // Not bot.init(): it retries a network failure forever, and start must fail clearly instead.
      bot.botInfo = await bot.api.getMe(grammySignal(signal));
    } catch (err) {
      const e = toChannelError(err, this.cfg.token);
      const hint = e.code === "E_TELEGRAM_401" || e.code === "E_TELEGRAM_404" ? "the bot token was refused: check channels.telegram.token (or TELEGRAM_BOT_TOKEN)" : e.message;
      throw new ChannelError("E_TELEGRAM_START", `Telegram getMe at ${this.cfg.api_root} failed: ${hint}`, { retryable: e.retryable, cause: e });
    }
    return { id: bot.botInfo.id, username: bot.botInfo.username };
  }

  private async startWebhook(ctx: ChannelContext, handle: TelegramIngress["handle"], signal: AbortSignal): Promise<void> {
    const secret = this.cfg.secret_token;
    if (!secret || !this.cfg.webhook_url) {
      throw new ChannelError("E_TELEGRAM_CONFIG", 'channels.telegram.webhook_url and secret_token: required when mode = "webhook"', { retryable: false });
    }
    // Telegram calls it by the public name of webhook_url; the secret token is what admits it.
    ctx.http.add("POST", this.cfg.webhook_path, createWebhookHandler({ secret, maxBodyBytes: this.deps.maxBodyBytes, handle }), { anyHost: true });
    try {
      await this.apis.api.setWebhook(this.cfg.webhook_url, { secret_token: secret, allowed_updates: [...ALLOWED_UPDATES] }, grammySignal(signal));
    } catch (err) {
      // Telegram may still have the webhook from the last run: keep serving and say so.
      this.logger.error({ err: toChannelError(err, this.cfg.token), url: this.cfg.webhook_url }, "setWebhook failed; updates arrive only if the webhook is already registered");
    }
  }

  async stop(): Promise<void> {
    this.controller.abort();
    this.streams.stop();
    await this.polling;
    // Notices for updates already confirmed get their grace period (a retry in progress
    // included) before what is left is cut off: their updates will not come again.
    const pending = Promise.allSettled([...this.background]);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([pending, new Promise((r) => (timer = setTimeout(r, STOP_GRACE_MS)))]);
    clearTimeout(timer);
    this.sends.abort();
  }

  send(m: OutboundMessage): Promise<{ messageId: string }> {
    return this.sendOnce(m, true);
  }

  /**
   * `takePreview`: the answer to `replyToId` finishes its streamed preview; a notice about the
   * same message (an edit, a sticker) must not, or the answer arrives as a second message.
   */
  private sendOnce(m: OutboundMessage, takePreview: boolean): Promise<{ messageId: string }> {
    const key = m.idempotencyKey;
    const existing = this.delivered.get(key);
    if (existing) return existing;
    const p = this.deliver(m, takePreview);
    this.delivered.set(key, p);
    // A failed send may be retried by the caller; the parts already sent are not sent again.
    void p.catch(() => this.delivered.delete(key));
    return p;
  }

  private async deliver(m: OutboundMessage, takePreview: boolean): Promise<{ messageId: string }> {
    const target = parseConversationId(m.conversationId);
    if (!target) throw badTarget(m.conversationId);
    const streamed = m.replyToId && takePreview ? await this.streams.finish(m.replyToId) : undefined;
    const parts = renderReply(m.text);
    const sent = this.progress.get(m.idempotencyKey) ?? [];
    this.progress.set(m.idempotencyKey, sent);
    for (let i = sent.length; i < parts.length; i++) {
      const part = parts[i];
      if (!part) continue;
      if (i === 0 && streamed !== undefined) {
        // The streamed message becomes the first part: edit it rather than send a copy.
        const edited = await this.outbox.edit(target, streamed, part, this.sends.signal).then(
          () => true,
          (err: unknown) => {
            this.logger.warn({ err, msgId: m.replyToId }, "could not finish the streamed message; sending the reply as a new one");
            return false;
          },
        );
        if (edited) {
          sent.push(streamed);
          continue;
        }
      }
      const replyTo = i === 0 ? parseMessageId(m.replyToId) : undefined;
      const id = await this.outbox.send({ ...target, ...(replyTo !== undefined ? { replyToMessageId: replyTo } : {}) }, part, this.sends.signal);
      if (id === undefined) return { messageId: "" };
      sent.push(id);
    }
    return { messageId: String(sent[0] ?? "") };
  }

  async edit(conversationId: string, messageId: string, text: string): Promise<void> {
    const target = parseConversationId(conversationId);
    if (!target) throw badTarget(conversationId);
    const [part] = renderReply(text);
    if (part) await this.outbox.edit(target, Number(messageId), part, this.sends.signal);
  }

  async typing(conversationId: string): Promise<void> {
    const target = parseConversationId(conversationId);
    if (!target || this.outbox.isBlocked(target.chatId)) return;
    try {
      await this.apis.quickApi.sendChatAction(target.chatId, "typing", target.threadId !== undefined ? { message_thread_id: target.threadId } : {}, grammySignal(this.sends.signal));
    } catch (err) {
      throw toChannelError(err, this.cfg.token);
    }
  }

  preview(conversationId: string, replyToId: string, chunk: string | null): void {
    this.streams.push(conversationId, replyToId, chunk);
  }

  /** Sends a short direct answer in the background, so the update loop never waits on it. */
  private notify(target: NoticeTarget, text: string, idempotencyKey: string): void {
    const p = this.sendOnce({ conversationId: target.conversationId, text, replyToId: target.replyToId, idempotencyKey }, false)
      .then(() => undefined)
      .catch((err: unknown) => this.logger.error({ err, msgId: target.replyToId }, "could not send a notice to Telegram"))
      .finally(() => this.background.delete(p));
    this.background.add(p);
  }
}
