import type { Browser, Page } from "playwright-core";
import { launchChromium } from "../support/browser.js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { GatewayHttpServer } from "../../src/http/http-server.js";
import { registerAdminRoutes } from "../../src/observability/admin-routes.js";
import { createPromMetrics } from "../../src/observability/metrics.js";
import { captureLogger, startTestGateway, type TestGateway } from "../support/harness.js";

let browser: Browser;
let t: TestGateway | undefined;
let admin: GatewayHttpServer | undefined;

beforeAll(async () => {
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
});
afterEach(async () => {
  await admin?.close();
  await t?.close();
  admin = undefined;
  t = undefined;
});

/** A gateway with Prometheus metrics, and its admin routes on a server of their own until the gateway mounts them. */
async function start(adminToken: string): Promise<string> {
  const { metrics, registry } = createPromMetrics();
  t = await startTestGateway({ gateway: { metrics }, llm: { latencyMs: 5 } });
  admin = new GatewayHttpServer(captureLogger([adminToken]));
  registerAdminRoutes(admin, { registry, adminToken });
  return `http://127.0.0.1:${await admin.listen(0, "127.0.0.1")}`;
}

async function figure(page: Page, id: string): Promise<string> {
  return (await page.locator(`#${id}`).textContent()) ?? "";
}

/** Waits until the page has taken `n` more samples than it had. */
async function nextSamples(page: Page, n: number): Promise<void> {
  const samples = async (): Promise<number> => Number((await page.locator("body").getAttribute("data-samples")) ?? 0);
  const now = await samples();
  await expect.poll(samples, POLL).toBeGreaterThanOrEqual(now + n);
}

// Polled from the test side: the page's CSP forbids the string evaluation waitForFunction would need.
const POLL = { timeout: 10_000, interval: 50 };

async function postAndWait(count: number): Promise<void> {
  const posted = await Promise.all(Array.from({ length: count }, (_, i) => t!.post(`user${i % 5}`, `hello ${i}`)));
  await Promise.all(posted.map((p) => t!.result(p.body.id as string)));
}

describe("dashboard in headless Chromium", () => {
  it("loads, draws the five charts, and its numbers move when messages flow", async () => {
    const base = await start("");
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on("pageerror", (err) => problems.push(err.message));
    page.on("console", (msg) => {
      if (msg.type() === "error") problems.push(msg.text());
    });
    try {
      const res = await page.goto(`${base}/dashboard`);
      expect(res?.status()).toBe(200);
      await expect.poll(() => page.locator(".chart canvas").count(), POLL).toBe(5);
      expect(await page.locator(".uplot").count()).toBe(5);
      await nextSamples(page, 1);
      expect(await figure(page, "fig-out")).toBe("0");
      expect(await page.locator("#status").textContent()).toMatch(/^live/);

      await postAndWait(20);
      await expect.poll(() => figure(page, "fig-out"), POLL).toBe("20");
      expect(await figure(page, "fig-in")).toBe("20");
      // The reply rate and p99 are computed from differences: both show a value once the burst lands in a sample.
      await expect.poll(() => figure(page, "fig-p99"), POLL).not.toBe("-");
      expect(await figure(page, "fig-p99")).toMatch(/^\d+(\.\d)? m?s$/);
      expect(await figure(page, "fig-rss")).toMatch(/^\d+\.\d MB$/);

      await postAndWait(10);
      await expect.poll(() => figure(page, "fig-out"), POLL).toBe("30");
      // What the throughput chart draws (uPlot's own data) has a point above zero from the bursts.
      const peakOut = await page.evaluate(() => {
        const w = globalThis as unknown as { zeptoclawDashboard: { charts: { data: (number | null)[][] }[] } };
        return Math.max(0, ...(w.zeptoclawDashboard.charts[0]?.data[2] ?? []).map((v) => v ?? 0));
      });
      expect(peakOut).toBeGreaterThan(0);
      if (process.env.DASHBOARD_SCREENSHOT) await page.screenshot({ path: process.env.DASHBOARD_SCREENSHOT, fullPage: true });
      expect(problems).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it("with an admin token: shows the login form, then the live dashboard after the token is typed in", async () => {
    const token = "dash-token-5c2e9a77b1f04d38a6e1";
    const base = await start(token);
    const context = await browser.newContext();
    const page = await context.newPage();
    try {
      const first = await page.goto(`${base}/dashboard`);
      expect(first?.status()).toBe(401);
      expect(await page.locator("canvas").count()).toBe(0);
      await page.fill('input[name="token"]', "wrong");
      await Promise.all([page.waitForLoadState("load"), page.click('button[type="submit"]')]);
      expect(await page.locator("body").textContent()).toMatch(/not right/);
      await page.fill('input[name="token"]', token);
      await Promise.all([page.waitForURL(`${base}/dashboard`), page.click('button[type="submit"]')]);
      await expect.poll(() => page.locator(".chart canvas").count(), POLL).toBe(5);
      await nextSamples(page, 1);
      await postAndWait(5);
      await expect.poll(() => figure(page, "fig-out"), POLL).toBe("5");
      const cookies = await context.cookies();
      expect(cookies.find((c) => c.name === "zeptoclaw_admin")?.httpOnly).toBe(true);
      expect(JSON.stringify(cookies)).not.toContain(token);
    } finally {
      await context.close();
    }
  });
});
