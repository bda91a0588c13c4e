import { autoRetry } from "@grammyjs/auto-retry";
import { Api, Bot, GrammyError, HttpError, type Transformer } from "grammy";
import { ChannelError } from "../../errors.js";
import { createHttpFetch } from "../../http/http-fetch.js";

/** How hard platform calls are retried; tests shorten the waits. */
export interface TelegramRetryOptions {
  /** Attempts for a 5xx or a network failure, the first included. */
  maxAttempts: number;
  /** First backoff wait in ms; doubles each time. */
  baseDelayMs: number;
  /** 429s honoured per call before giving up. */
  max429Retries: number;
  /** A `retry_after` longer than this (seconds) fails the call instead of waiting. */
  maxRetryAfterSeconds: number;
}

/** The default retry policy: about 7.5 s of backoff over four attempts. */
export const DEFAULT_RETRY: TelegramRetryOptions = { maxAttempts: 4, baseDelayMs: 500, max429Retries: 5, maxRetryAfterSeconds: 120 };

/** grammy types its signal with the `abort-controller` shim; at run time it takes Node's own. */
export type GrammySignal = Parameters<Api["getMe"]>[0];

/** Passes a Node AbortSignal to grammy. */
export function grammySignal(signal: AbortSignal | undefined): GrammySignal {
  return signal as unknown as GrammySignal;
}

/** Calls not worth waiting for: a typing indicator is stale by the time a retry lands. */
const NO_RETRY = new Set(["sendChatAction", "getUpdates"]);

/** The grammy clients a channel needs: `api` retries, `quickApi` (previews, typing) does not. */
export interface TelegramApis {
  bot: Bot;
  api: Api;
  quickApi: Api;
}

/** Creates the grammy bot for `token` against `apiRoot`, with the retry transformers installed. */
export function createTelegramApis(token: string, apiRoot: string, retry: TelegramRetryOptions): TelegramApis {
  // Our node:http fetch instead of grammy's node-fetch: a third of the CPU per Bot API call.
  // Bodies are JSON text; we never upload files, which would need a streamed body.
  const { fetch } = createHttpFetch(64);
  const client = { apiRoot: apiRoot.replace(/\/+$/, ""), timeoutSeconds: 60, fetch: fetch as unknown as typeof globalThis.fetch };
  const bot = new Bot(token, { client });
  bot.api.config.use(
    skipFor(NO_RETRY, retryServerErrors(retry)),
    skipFor(new Set(["sendChatAction"]), autoRetry({
      maxRetryAttempts: retry.max429Retries,
      maxDelaySeconds: retry.maxRetryAfterSeconds,
      // 5xx and network failures are retried by retryServerErrors, bounded and with our backoff.
      rethrowInternalServerErrors: true,
      rethrowHttpErrors: true,
    })),
  );
  const quickApi = new Api(token, { ...client, timeoutSeconds: 15 });
  return { bot, api: bot.api, quickApi };
}

function skipFor(methods: ReadonlySet<string>, t: Transformer): Transformer {
  return (prev, method, payload, signal) => (methods.has(method) ? prev(method, payload, signal) : t(prev, method, payload, signal));
}

/** Retries 5xx answers and network failures with doubling waits, a bounded number of times. */
function retryServerErrors(o: TelegramRetryOptions): Transformer {
  return async (prev, method, payload, signal) => {
    for (let attempt = 1; ; attempt++) {
      const last = attempt >= o.maxAttempts;
      try {
        const res = await prev(method, payload, signal);
        if (res.ok || res.error_code < 500 || last) return res;
      } catch (err) {
        if (last || signal?.aborted || !(err instanceof HttpError)) throw err;
      }
      await delay(o.baseDelayMs * 2 ** (attempt - 1) * (0.8 + Math.random() * 0.4), signal as unknown as AbortSignal | undefined);
    }
  };
}

/** Waits `ms`, or rejects as soon as `signal` aborts. */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new Error("aborted"));
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(new Error("aborted"));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Removes the bot token from text: grammy's network errors carry the URL, and it holds the token. */
export function scrubToken(text: string, token: string): string {
  const out = token.length > 0 ? text.split(token).join("[REDACTED]") : text;
  return out.replace(/bot\d+:[A-Za-z0-9_-]{20,}/g, "bot[REDACTED]");
}

/**
 * Turns what grammy throws into a `ChannelError` whose message and cause are free of the token:
 * `E_TELEGRAM_<status>` when the Bot API said no, `E_TELEGRAM_NETWORK` when it could not be reached.
 */
export function toChannelError(err: unknown, token: string): ChannelError {
  if (err instanceof ChannelError) return err;
  if (err instanceof GrammyError) {
    const retryAfter = err.parameters.retry_after;
    const code = err.error_code;
    return new ChannelError(`E_TELEGRAM_${code}`, `Telegram ${err.method} failed: ${code} ${scrubToken(err.description, token)}`, {
      retryable: code === 429 || code >= 500,
      status: code,
      ...(typeof retryAfter === "number" ? { retryAfterMs: retryAfter * 1000 } : {}),
      cause: { method: err.method, error_code: code, description: scrubToken(err.description, token) },
    });
  }
  if (err instanceof HttpError) {
    const inner = err.error instanceof Error ? err.error.message : String(err.error);
    const message = scrubToken(`${err.message} (${inner})`, token);
    return new ChannelError("E_TELEGRAM_NETWORK", `Telegram could not be reached: ${message}`, { retryable: true, cause: new Error(message) });
  }
  const message = scrubToken(err instanceof Error ? err.message : String(err), token);
  return new ChannelError("E_TELEGRAM", `Telegram call failed: ${message}`, { retryable: false, cause: new Error(message) });
}
