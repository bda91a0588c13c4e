import type { Api } from "grammy";
import type { Update } from "grammy/types";
import type { Logger } from "pino";
import { BusClosedError, StorageError } from "../../errors.js";
import { delay, toChannelError, grammySignal } from "./api.js";
import { ALLOWED_UPDATES } from "./normalize.js";

/** Settings of the long-polling loop. */
export interface PollingOptions {
  api: Api;
  token: string;
  handle(update: Update): Promise<void>;
  logger: Logger;
  signal: AbortSignal;
  /** Long-poll wait Telegram holds each getUpdates open, in seconds. */
  timeoutSeconds: number;
  /** First wait after a failed getUpdates, in ms; doubles up to `maxBackoffMs`. */
  backoffMs: number;
  maxBackoffMs: number;
}

/** Times an update may fail to reach the bus before it is skipped, so one cannot wedge the loop. */
const MAX_UPDATE_ATTEMPTS = 5;

/**
 * Long polling with ack-after-accept: each update goes to `handle` in order, and the next
 * getUpdates confirms (through `offset`) only updates whose `handle` resolved, i.e. the bus
 * accepted them. A 409 means another process polls this token: it is logged clearly and the
 * loop backs off instead of spinning. Resolves when `signal` aborts, after confirming the offset.
 */
export async function runPolling(o: PollingOptions): Promise<void> {
  let offset: number | undefined;
  let failures = 0;
  /** Failed hand-overs in a row; unlike `failures`, not reset by a getUpdates that works. */
  let handFailures = 0;
  const attempts = new Map<number, number>();
  const wait = (n: number): Promise<void> => delay(Math.min(o.maxBackoffMs, o.backoffMs * 2 ** (n - 1)), o.signal).catch(() => undefined);
  const backoff = async (): Promise<void> => {
    failures++;
    await wait(failures);
  };
  poll: while (!o.signal.aborted) {
    let updates: Update[];
    try {
      updates = await o.api.getUpdates({ ...(offset !== undefined ? { offset } : {}), timeout: o.timeoutSeconds, allowed_updates: [...ALLOWED_UPDATES] }, grammySignal(o.signal));
    } catch (err) {
      if (o.signal.aborted) break;
      const e = toChannelError(err, o.token);
      const status = e.status;
      if (status === 409) {
        o.logger.error({ code: e.code, reason: e.message }, "another process is polling this Telegram bot token (409 Conflict), or a webhook is set; only one poller per token can run. Backing off");
      } else if (status === 401 || status === 404) {
        o.logger.error({ code: e.code }, "Telegram refused the bot token; check channels.telegram.token (or TELEGRAM_BOT_TOKEN). Backing off");
      } else {
        o.logger.warn({ err: e, failures: failures + 1 }, "getUpdates failed; backing off");
      }
      await backoff();
      continue;
    }
    failures = 0;
    for (const update of updates) {
      if (o.signal.aborted) break poll;
      try {
        await o.handle(update);
        handFailures = 0;
      } catch (err) {
        // Shutting down: leave this update unconfirmed so the next start gets it again, but
        // confirm the ones before it (below), whose notices and refusals went out already.
        if (err instanceof BusClosedError || o.signal.aborted) break poll;
        const n = (attempts.get(update.update_id) ?? 0) + 1;
        attempts.set(update.update_id, n);
        handFailures++;
        // A store that cannot be written (disk full, locked) is the store's trouble, not the
        // update's: wait for it as long as it takes; Telegram keeps an update for 24 hours.
        if (err instanceof StorageError || n < MAX_UPDATE_ATTEMPTS) {
          o.logger.warn({ err, updateId: update.update_id, attempt: n }, "Telegram update could not be handed to the bus; will retry");
          await wait(handFailures);
          continue poll;
        }
        o.logger.error({ err, updateId: update.update_id }, "Telegram update failed too often; skipping it");
      }
      attempts.delete(update.update_id);
      offset = update.update_id + 1;
    }
  }
  if (offset !== undefined) {
    // Confirms what was handled so a restart does not see it again (timeout 0: returns at once).
    await o.api.getUpdates({ offset, limit: 1, timeout: 0, allowed_updates: [...ALLOWED_UPDATES] }, grammySignal(AbortSignal.timeout(3_000))).catch(() => undefined);
  }
}
