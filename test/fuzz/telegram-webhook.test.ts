import { Agent, request } from "node:http";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FakeTelegram, startFakeTelegram } from "../support/fake-telegram.js";
import { capturedLogs, startTestGateway, type TestGateway } from "../support/harness.js";

// The Telegram webhook gets at least RUNS generated bad or forged requests per property: with
// a wrong secret every one is 401 before the body is read; with the right secret, bad bodies
// are 4xx and odd-but-parseable updates are acknowledged or refused, never a 5xx or a hang.
const RUNS = 1_000;
const MAX_BODY = 16_384;
const SECRET = "fuzz-webhook-secret_4b9e2c71";
const PATH = "/telegram/webhook";

let t: TestGateway | undefined;
let api: FakeTelegram;
const agent = new Agent({ keepAlive: true, maxSockets: 4 });

function post(headers: Record<string, string>, body: Buffer | string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const buf = Buffer.isBuffer(body) ? body : Buffer.from(body, "utf8");
    let answered = false;
    const req = request({ host: "127.0.0.1", port: t!.gw.port, method: "POST", path: PATH, agent, headers: { ...headers, "content-length": buf.length } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        answered = true;
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") });
      });
    });
    req.setTimeout(5_000, () => req.destroy(new Error("no answer within 5 s")));
    req.on("error", (err) => {
      if (!answered) reject(err);
    });
    req.end(buf);
  });
}

beforeAll(async () => {
  api = await startFakeTelegram();
  t = await startTestGateway({
    env: {
      ZEPTOCLAW_HTTP_MAX_BODY_BYTES: String(MAX_BODY),
      ZEPTOCLAW_CHANNELS_TELEGRAM_ENABLED: "true",
      ZEPTOCLAW_CHANNELS_TELEGRAM_TOKEN: api.token,
      ZEPTOCLAW_CHANNELS_TELEGRAM_MODE: "webhook",
      ZEPTOCLAW_CHANNELS_TELEGRAM_API_ROOT: api.url,
      ZEPTOCLAW_CHANNELS_TELEGRAM_WEBHOOK_URL: "https://bot.example.invalid/telegram/webhook",
      ZEPTOCLAW_CHANNELS_TELEGRAM_SECRET_TOKEN: SECRET,
    },
  });
});

afterAll(async () => {
  agent.destroy();
  await t?.close();
  await api?.close();
});

const json = { "content-type": "application/json" };
const badSecret = fc.oneof(
  fc.constant<Record<string, string>>({}),
  fc.stringMatching(/^[A-Za-z0-9_-]{0,64}$/).filter((s) => s !== SECRET).map((s) => ({ "x-telegram-bot-api-secret-token": s })),
  fc.constantFrom(SECRET.slice(0, -1), `${SECRET}x`, SECRET.toUpperCase(), ` ${SECRET}`).map((s) => ({ "x-telegram-bot-api-secret-token": s.trim() === SECRET ? `${s}!` : s })),
);

/** Any value in the wrong place: what a forged update may put where Telegram puts objects and numbers. */
const junk = fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.constant(null), fc.string({ maxLength: 20 }), fc.integer(), fc.double());
const user = fc.oneof({ weight: 3, arbitrary: fc.record({ id: fc.integer({ min: 1, max: 1e9 }), is_bot: fc.boolean(), first_name: fc.string({ maxLength: 10 }) }) }, { weight: 1, arbitrary: junk });
const chat = fc.oneof({ weight: 3, arbitrary: fc.record({ id: fc.integer({ min: -1e12, max: 1e12 }), type: fc.constantFrom("private", "group", "supergroup", "channel", "weird") }) }, { weight: 1, arbitrary: junk });
const message = fc.oneof(
  { weight: 4, arbitrary: fc.record({ message_id: fc.oneof(fc.integer({ min: 1, max: 1e6 }), junk), from: user, chat, date: fc.oneof(fc.integer(), junk), text: fc.oneof(fc.string({ maxLength: 50 }), junk), entities: fc.oneof(junk, fc.array(fc.record({ type: fc.constantFrom("mention", "bot_command", "x"), offset: fc.integer(), length: fc.integer() }), { maxLength: 3 })) }, { requiredKeys: [] }) },
  { weight: 1, arbitrary: junk },
);
let nextUpdateId = 1;
/** Parseable updates with a numeric update_id whose content is odd, partial or wrongly typed. */
const oddUpdate = fc
  .record({ message, edited_message: message, callback_query: junk, my_chat_member: junk, extra: junk }, { requiredKeys: [] })
  .map((u) => JSON.stringify({ update_id: nextUpdateId++, ...u }));

/** Bodies the webhook must refuse outright: not JSON, not an object, no numeric update_id, bad bytes, too big. */
const badBody = fc.oneof(
  fc.string({ maxLength: 100 }).filter((s) => {
    try {
      JSON.parse(s);
      return false;
    } catch {
      return true;
    }
  }),
  fc.jsonValue({ maxDepth: 2 }).filter((v) => typeof v !== "object" || v === null || Array.isArray(v)).map((v) => JSON.stringify(v) ?? "null"),
  fc.record({ update_id: fc.oneof(fc.string(), fc.double().filter((d) => !Number.isSafeInteger(d)), fc.constant(null), fc.array(fc.integer())) }, { requiredKeys: [] }).map((o) => JSON.stringify(o)),
  fc.integer({ min: MAX_BODY + 1, max: MAX_BODY * 4 }).map((n) => `{"update_id":1,"message":{"text":"${"x".repeat(n)}"}}`),
  fc.integer({ min: 10, max: MAX_BODY / 2 - 20 }).map((d) => "[".repeat(d) + "]".repeat(d)),
);

describe("fuzz: Telegram webhook", () => {
  it("refuses every request without the right secret with 401, whatever the body", async () => {
    await fc.assert(
      fc.asyncProperty(badSecret, fc.oneof(oddUpdate, badBody), async (headers, body) => {
        const a = await post({ ...json, ...headers }, body);
        expect(a.status, a.body).toBe(401);
      }),
      { numRuns: RUNS, endOnFailure: true },
    );
  });

  it("answers bad bodies with the right secret with a 4xx and a reason", async () => {
    await fc.assert(
      fc.asyncProperty(badBody, async (body) => {
        const a = await post({ ...json, "x-telegram-bot-api-secret-token": SECRET }, body);
        expect(a.status, `${body.slice(0, 80)} -> ${a.body}`).toBeGreaterThanOrEqual(400);
        expect(a.status, `${body.slice(0, 80)} -> ${a.body}`).toBeLessThan(500);
        expect((JSON.parse(a.body) as { error?: string }).error).toBeTruthy();
      }),
      { numRuns: RUNS, endOnFailure: true },
    );
  });

  it("never answers odd or forged updates with a 5xx, and stays up", async () => {
    await fc.assert(
      fc.asyncProperty(oddUpdate, async (body) => {
        const a = await post({ ...json, "x-telegram-bot-api-secret-token": SECRET }, body);
        // 200 acknowledges (Telegram would redeliver anything else); 4xx refuses; 503 while closing is not expected here.
        expect(a.status, `${body.slice(0, 300)} -> ${a.status} ${a.body}`).toBeLessThan(500);
      }),
      { numRuns: RUNS, endOnFailure: true },
    );
    const health = await fetch(`${t!.base}/healthz`);
    expect(health.status).toBe(200);
    expect(capturedLogs.filter((l) => l.includes("request handler failed"))).toEqual([]);
    expect(capturedLogs.join("")).not.toContain(SECRET);
    expect(capturedLogs.join("")).not.toContain(api.token);
  });
});
