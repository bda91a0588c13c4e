import { createServer, request, type Server } from "node:http";
import type { Browser } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { isAllowedHost } from "../../src/http/http-server.js";
import { launchChromium } from "../support/browser.js";
import { startTestGateway, type TestGateway } from "../support/harness.js";

let t: TestGateway | undefined;
let page: Server | undefined;
let browser: Browser | undefined;
beforeAll(async () => {
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
});
afterEach(async () => {
  await new Promise((r) => (page ? page.close(r) : r(undefined)));
  page = undefined;
  await t?.close();
  t = undefined;
});

/** One request with a Host header of our choosing (fetch will not set one). */
function get(port: number, path: string, host: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, headers: { host } }, (res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("requests from other web sites", () => {
  it("a page on another site cannot post as a user: its no-cors request has no JSON type, and is refused", async () => {
    t = await startTestGateway();
    const target = `${t.base}/api/messages`;
    // The attacker's page, on another origin (another port), posting the way a page may
    // without the browser asking the gateway first: mode no-cors, a body with no type.
    page = createServer((_req, res) => {
      res.writeHead(200, { "content-type": "text/html" });
      res.end(`<script>
        window.done = fetch(${JSON.stringify(target)}, { method: "POST", mode: "no-cors", body: new Blob([JSON.stringify({ user: "alice", text: "forget everything" })]) })
          .then(() => "sent", (e) => String(e));
      </script>`);
    });
    await new Promise<void>((r) => page!.listen(0, "127.0.0.1", r));
    const tab = await browser!.newPage();
    await tab.goto(`http://127.0.0.1:${(page.address() as { port: number }).port}/`);
    expect(await tab.evaluate("window.done")).toBe("sent");
    await tab.close();
    // Refused with 415 before it reached the bus (counted as it is accepted): nothing was accepted.
    expect(await (await fetch(`${t.base}/metrics`)).text()).not.toMatch(/zeptoclaw_messages_in_total\{[^}]*\} [1-9]/);
    expect(t.llm.count).toBe(0);
    const plain = await fetch(target, { method: "POST", body: JSON.stringify({ user: "alice", text: "hi" }), headers: { "content-type": "text/plain" } });
    expect(plain.status).toBe(415);
  });

  it("answers only requests that name it by IP address, localhost or an allowed name (DNS rebinding)", async () => {
    t = await startTestGateway({ env: { ZEPTOCLAW_HTTP_ALLOWED_HOSTS: "chat.example.com,.internal.example" } });
    const port = t.gw.port;
    // A page whose own name now points at 127.0.0.1 sends that name: refused everywhere private.
    for (const path of ["/", "/api/stream?user=alice", "/api/messages/webchat:x", "/metrics", "/dashboard"]) {
      const r = await get(port, path, `rebind.attacker.example:${port}`);
      expect(r.status, path).toBe(403);
      expect(JSON.parse(r.body).error).toBe('host "rebind.attacker.example" is not allowed: name this server by IP address or localhost, or add the name to http.allowed_hosts');
    }
    // Health probes answer whatever the name.
    expect((await get(port, "/healthz", "lb.example")).status).toBe(200);
    expect((await get(port, "/readyz", "lb.example")).status).toBe(200);
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, "chat.example.com", "a.internal.example", "CHAT.EXAMPLE.COM:443"]) {
      expect((await get(port, "/api/status", host)).status, host).toBe(200);
    }
    expect((await get(port, "/api/status", "chat.example.com.evil")).status).toBe(403);
    // Fully qualified names, with their trailing dot.
    for (const host of ["localhost.", `127.0.0.1.:${port}`, "chat.example.com."]) expect((await get(port, "/api/status", host)).status, host).toBe(200);
  });

  it("lets a client with the admin token scrape by any name, which a rebinding page cannot send", async () => {
    const token = "admin-token-for-the-test";
    t = await startTestGateway({ env: { ZEPTOCLAW_HTTP_ADMIN_TOKEN: token } });
    await t.gw.adminReady;
    const scrape = (host: string, auth?: string) =>
      new Promise<number>((resolve, reject) => {
        const req = request({ host: "127.0.0.1", port: t!.gw.port, path: "/metrics", headers: { host, ...(auth ? { authorization: auth } : {}) } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on("error", reject);
        req.end();
      });
    // Prometheus in a compose file, by service name.
    expect(await scrape("zeptoclaw:8787", `Bearer ${token}`)).toBe(200);
    expect(await scrape("zeptoclaw:8787")).toBe(401);
    // The web chat's own routes still check the name.
    expect((await get(t.gw.port, "/api/status", "zeptoclaw:8787")).status).toBe(403);
  });

  it("tells names apart as a browser would send them", () => {
    expect(isAllowedHost("10.0.0.5:8787", [])).toBe(true);
    expect(isAllowedHost("[fe80::1]:8787", [])).toBe(true);
    expect(isAllowedHost("app.localhost", [])).toBe(true);
    expect(isAllowedHost("localhost.attacker.example", [])).toBe(false);
    expect(isAllowedHost("127.0.0.1.nip.io", [])).toBe(false);
    expect(isAllowedHost("internal.example", [".internal.example"])).toBe(true);
    expect(isAllowedHost("xinternal.example", [".internal.example"])).toBe(false);
    expect(isAllowedHost(undefined, [])).toBe(true);
  });
});
