import { afterAll, expect } from "vitest";
import { capturedLogs } from "./harness.js";

/** Secrets the test suite hands to gateways; none may ever appear in a log line. */
export const TEST_SECRETS = ["sk-test-secret-key-123456", "sk-file-secret-999", "admin-secret-token-42"];

/** A Telegram bot token's shape (`123456:ABC...`), whatever token a test used. */
const TELEGRAM_TOKEN = /\b\d{6,12}:[A-Za-z0-9_-]{30,}\b/;

// Runs after every test file: every log line of the whole suite is checked.
afterAll(() => {
  for (const line of capturedLogs) {
    for (const secret of TEST_SECRETS) expect(line, "a secret reached a log line").not.toContain(secret);
    expect(TELEGRAM_TOKEN.test(line), `a bot token reached a log line: ${line.slice(0, 200)}`).toBe(false);
  }
});
