import type { Browser } from "playwright-core";
import { launchChromium } from "../support/browser.js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startTestGateway, type TestGateway } from "../support/harness.js";

let browser: Browser;
let t: TestGateway | undefined;
beforeAll(async () => {
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
});
afterEach(async () => {
  await t?.close();
  t = undefined;
});

describe("the chat page", () => {
  it("sends what a person types and shows the reply as it streams", async () => {
    t = await startTestGateway({ llm: { chunkSize: 4, chunkDelayMs: 40, answer: () => "Hello from the fake model, streamed in small pieces." } });
    const page = await browser.newPage();
    await page.goto(t.base);
    await expect.poll(() => page.textContent("#conn")).toBe("connected");
    await page.fill("#text", "hi there");
    await page.press("#text", "Enter");
    // Watch the reply bubble: it must show partial text before the whole answer.
    const seen = new Set<string>();
    const deadline = Date.now() + 10_000;
    for (;;) {
      const text = (await page.locator(".msg.bot").first().textContent({ timeout: 1_000 }).catch(() => "")) ?? "";
      if (text) seen.add(text);
      if (text === "Hello from the fake model, streamed in small pieces." || Date.now() > deadline) break;
      await page.waitForTimeout(15);
    }
    expect([...seen].at(-1)).toBe("Hello from the fake model, streamed in small pieces.");
    expect([...seen].filter((s) => s.length > 0 && s.length < 51).length).toBeGreaterThan(2);
    expect(await page.textContent(".msg.me")).toBe("hi there");
    await expect.poll(() => page.getAttribute(".msg.bot", "class")).toBe("msg bot");
    expect(t.llm.requests[0]?.messages.at(-1)?.content).toBe("hi there");
    await page.close();
  });

  it("shows a reply that came while its stream was down once it reconnects", async () => {
    t = await startTestGateway({ llm: { latencyMs: 500 } });
    const page = await browser.newPage();
    await page.goto(t.base);
    await expect.poll(() => page.textContent("#conn")).toBe("connected");
    await page.fill("#text", "are you there?");
    await page.press("#text", "Enter");
    const id = await page.locator(".msg.bot.pending").getAttribute("data-id");
    // The stream goes down before the answer, as a dropped connection or a stalled tab's would.
    await page.evaluate("source.close()");
    expect(await t.result(id as string)).toMatchObject({ status: "done", reply: "echo: are you there?" });
    expect(await page.getAttribute(".msg.bot", "class")).toBe("msg bot pending");
    await page.evaluate("connect()");
    await expect.poll(() => page.textContent(".msg.bot")).toBe("echo: are you there?");
    expect(await page.getAttribute(".msg.bot", "class")).toBe("msg bot");
    await page.close();
  });

  it("shows what to configure when no LLM is set", async () => {
    t = await startTestGateway({ env: { ZEPTOCLAW_LLM_BASE_URL: "https://api.openai.com/v1", ZEPTOCLAW_LLM_API_KEY: "" } });
    const page = await browser.newPage();
    await page.goto(t.base);
    await expect.poll(() => page.textContent("#banner")).toMatch(/OPENAI_API_KEY/);
    await page.close();
  });
});
