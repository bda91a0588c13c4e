import { afterEach, describe, expect, it } from "vitest";
import { GatewayHttpServer } from "../../src/http/http-server.js";
import { ADMIN_COOKIE, checkAdminAccess, dashboardSnapshot, registerAdminRoutes } from "../../src/observability/admin-routes.js";
import { createPromMetrics } from "../../src/observability/metrics.js";
import { capturedLogs, captureLogger, startTestGateway, type TestGateway } from "../support/harness.js";

const TOKEN = "adm-9f8e7d6c5b4a3928171605f4e3d2c1b0";

let server: GatewayHttpServer | undefined;
let t: TestGateway | undefined;
afterEach(async () => {
  await server?.close();
  await t?.close();
  server = undefined;
  t = undefined;
});

/** The admin routes on a server of their own, as the gateway will mount them. */
async function startAdmin(adminToken: string): Promise<{ base: string; metrics: ReturnType<typeof createPromMetrics>["metrics"] }> {
  const { metrics, registry } = createPromMetrics();
  server = new GatewayHttpServer(captureLogger([TOKEN]));
  registerAdminRoutes(server, { registry, adminToken });
  return { base: `http://127.0.0.1:${await server.listen(0, "127.0.0.1")}`, metrics };
}

const req = (remoteAddress: string | undefined, headers: Record<string, string> = {}) => ({ headers, socket: { remoteAddress } });

describe("admin access guard", () => {
  it("without a token, answers loopback only", () => {
    for (const addr of ["127.0.0.1", "::1", "::ffff:127.0.0.1"]) expect(checkAdminAccess(req(addr), "")).toEqual({ ok: true });
    for (const addr of ["10.0.0.5", "192.168.1.20", "::ffff:10.0.0.5", "2001:db8::1", "127.0.0.2", "", undefined]) {
      expect(checkAdminAccess(req(addr), "")).toEqual({ ok: false, status: 403, reason: expect.stringMatching(/only on localhost/) });
    }
  });

  it("without a token, refuses loopback requests that came through a proxy", () => {
    for (const h of ["x-forwarded-for", "forwarded", "x-real-ip"]) {
      expect(checkAdminAccess(req("127.0.0.1", { [h]: "203.0.113.9" }), "")).toMatchObject({ ok: false, status: 403, reason: expect.stringMatching(/proxied/) });
    }
  });

  it("with a token, requires it from every address, loopback included", () => {
    expect(checkAdminAccess(req("127.0.0.1"), TOKEN)).toMatchObject({ ok: false, status: 401 });
    expect(checkAdminAccess(req("203.0.113.9", { authorization: `Bearer ${TOKEN}` }), TOKEN)).toEqual({ ok: true });
    expect(checkAdminAccess(req("127.0.0.1", { authorization: `bearer ${TOKEN}` }), TOKEN)).toEqual({ ok: true });
    for (const auth of [`Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(0, -1)}`, "Bearer", "", `Basic ${TOKEN}`, TOKEN, `Bearer ${TOKEN} extra`]) {
      const r = checkAdminAccess(req("127.0.0.1", { authorization: auth }), TOKEN);
      expect(r).toMatchObject({ ok: false, status: 401 });
      expect(JSON.stringify(r)).not.toContain(TOKEN);
    }
    expect(checkAdminAccess(req("127.0.0.1", { cookie: `${ADMIN_COOKIE}=${TOKEN}` }), TOKEN)).toMatchObject({ ok: false, status: 401 });
    expect(checkAdminAccess(req("127.0.0.1", { cookie: `${ADMIN_COOKIE}=` }), TOKEN)).toMatchObject({ ok: false, status: 401 });
  });
});

describe("admin endpoints over HTTP", () => {
  it("with a token set: 401 without it or with a wrong one, 200 with the bearer token", async () => {
    const { base } = await startAdmin(TOKEN);
    for (const path of ["/metrics", "/dashboard/data", "/dashboard/uplot.js", "/dashboard/dashboard.js"]) {
      const none = await fetch(`${base}${path}`);
      expect(none.status).toBe(401);
      expect(none.headers.get("www-authenticate")).toMatch(/^Bearer/);
      const body = await none.text();
      expect(body).toMatch(/admin token required/);
      const wrong = await fetch(`${base}${path}`, { headers: { authorization: "Bearer not-the-token" } });
      expect(wrong.status).toBe(401);
      expect(await wrong.text()).not.toContain(TOKEN);
      const right = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
      expect(right.status).toBe(200);
      await right.arrayBuffer();
    }
    const page = await fetch(`${base}/dashboard`);
    expect(page.status).toBe(401);
    expect(await page.text()).toContain('action="/dashboard/login"');
    expect(capturedLogs.join("")).not.toContain(TOKEN);
  });

  it("exchanges the token typed into the login form for an HttpOnly cookie that opens the dashboard", async () => {
    const { base } = await startAdmin(TOKEN);
    const form = { "content-type": "application/x-www-form-urlencoded" };
    const bad = await fetch(`${base}/dashboard/login`, { method: "POST", headers: form, body: "token=guess", redirect: "manual" });
    expect(bad.status).toBe(401);
    expect(bad.headers.get("set-cookie")).toBeNull();
    expect((await fetch(`${base}/dashboard/login`, { method: "POST", headers: form, body: "", redirect: "manual" })).status).toBe(400);
    expect((await fetch(`${base}/dashboard/login`, { method: "POST", body: JSON.stringify({ token: TOKEN }), redirect: "manual" })).status).toBe(415);
    const ok = await fetch(`${base}/dashboard/login`, { method: "POST", headers: form, body: `token=${encodeURIComponent(TOKEN)}`, redirect: "manual" });
    expect(ok.status).toBe(303);
    expect(ok.headers.get("location")).toBe("/dashboard");
    const setCookie = ok.headers.get("set-cookie") ?? "";
    expect(setCookie).toMatch(/HttpOnly/);
    expect(setCookie).toMatch(/SameSite=Strict/);
    expect(setCookie).not.toContain(TOKEN);
    const cookie = setCookie.split(";")[0] as string;
    const page = await fetch(`${base}/dashboard`, { headers: { cookie } });
    expect(page.status).toBe(200);
    expect(page.headers.get("content-security-policy")).toMatch(/script-src 'self'/);
    expect(await page.text()).toContain("/dashboard/dashboard.js");
    expect((await fetch(`${base}/dashboard/data`, { headers: { cookie } })).status).toBe(200);
    expect((await fetch(`${base}/metrics`, { headers: { cookie } })).status).toBe(200);
  });

  it("without a token: answers on loopback, refuses proxied requests, has no login", async () => {
    const { base, metrics } = await startAdmin("");
    metrics.inbound("webchat");
    const res = await fetch(`${base}/metrics`);
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('zeptoclaw_messages_in_total{channel="webchat"} 1');
    expect((await fetch(`${base}/dashboard`)).status).toBe(200);
    const proxied = await fetch(`${base}/metrics`, { headers: { "x-forwarded-for": "203.0.113.9" } });
    expect(proxied.status).toBe(403);
    expect(await proxied.json()).toEqual({ error: expect.stringMatching(/set http.admin_token/) });
    const login = await fetch(`${base}/dashboard/login`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: "token=x" });
    expect(login.status).toBe(404);
    expect((await fetch(`${base}/dashboard/nope.js`)).status).toBe(404);
    expect((await fetch(`${base}/metrics`, { method: "POST" })).status).toBe(405);
  });

  it("serves a JSON snapshot of the registry for the page", async () => {
    const { metrics, registry } = createPromMetrics();
    metrics.inbound("webchat");
    metrics.inbound("webchat");
    metrics.outbound("webchat", false, 40);
    metrics.outbound("webchat", true, 900);
    metrics.llmCall("x", 30, undefined);
    metrics.llmCall("x", 0, undefined, "e_llm_timeout");
    metrics.setGauges({ busDepth: 4, activeUsers: 2 });
    const s = await dashboardSnapshot(registry);
    expect(s).toMatchObject({ messagesIn: 2, messagesOut: 2, errorReplies: 1, llmCalls: 1, llmErrors: 1, busDepth: 4, activeUsers: 2 });
    expect(s.rssBytes).toBeGreaterThan(1_000_000);
    expect(s.replyLatency.le.at(-1)).toBe(-1);
    expect(s.replyLatency.counts.at(-1)).toBe(2);
    expect(s.replyLatency.counts[s.replyLatency.le.indexOf(0.05)]).toBe(1);
  });

  it("are served by the gateway itself, behind http.admin_token", async () => {
    t = await startTestGateway({ env: { ZEPTOCLAW_HTTP_ADMIN_TOKEN: TOKEN } });
    const probe = await fetch(`${t.base}/metrics`);
    await probe.arrayBuffer();
    expect(probe.status).toBe(401);
    const { body } = await t.post("wired", "hello");
    await t.result(body.id as string);
    const res = await fetch(`${t.base}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('zeptoclaw_messages_in_total{channel="webchat"} 1');
    expect((await fetch(`${t.base}/dashboard`)).status).toBe(401);
    expect((await fetch(`${t.base}/dashboard`, { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(200);
  });
});
