import { timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Update } from "grammy/types";
import { BusClosedError } from "../../errors.js";
import { HttpError, readBody, sendJson } from "../../http/http-server.js";

/** Settings of the webhook endpoint. */
export interface WebhookOptions {
  secret: string;
  maxBodyBytes: number;
  handle(update: Update): Promise<void>;
}

function sameSecret(got: string, want: string): boolean {
  const a = Buffer.from(got);
  const b = Buffer.from(want);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * The handler for `POST webhook_path`: 401 unless `X-Telegram-Bot-Api-Secret-Token` matches
 * (before the body is even read), 413 over the size limit, 400 on bad JSON, and 200 as soon
 * as the bus accepted the update, never after the agent ran. 503 while shutting down, so
 * Telegram delivers the update again to the restarted gateway.
 */
export function createWebhookHandler(o: WebhookOptions): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  return async (req, res) => {
    const got = req.headers["x-telegram-bot-api-secret-token"];
    if (typeof got !== "string" || !sameSecret(got, o.secret)) {
      req.resume();
      throw new HttpError(401, "missing or wrong X-Telegram-Bot-Api-Secret-Token");
    }
    const body = await readBody(req, o.maxBodyBytes);
    let update: unknown;
    try {
      update = JSON.parse(body.toString("utf8"));
    } catch {
      throw new HttpError(400, "body is not valid JSON");
    }
    if (typeof update !== "object" || update === null || !Number.isSafeInteger((update as { update_id?: unknown }).update_id)) {
      throw new HttpError(400, "expected a Telegram Update object with a numeric update_id");
    }
    try {
      await o.handle(update as Update);
    } catch (err) {
      if (err instanceof BusClosedError) throw new HttpError(503, "the gateway is restarting, try again", { "retry-after": "5" });
      throw err;
    }
    sendJson(res, 200, { ok: true });
  };
}
