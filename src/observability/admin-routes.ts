import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import type { Registry } from "prom-client";
import { HttpError, type HttpRoutes, readBody, sendJson } from "../http/http-server.js";
import { PACKAGE_ROOT } from "../package-info.js";

/** Settings of the admin endpoints. */
export interface AdminRoutesOptions {
  registry: Registry;
  /** `[http] admin_token`; empty means "loopback only". */
  adminToken: string;
  /** The dashboard page; its scripts live in the `dashboard/` folder next to it. */
  pagePath?: string;
}

/** What `checkAdminAccess` decided. */
export type AdminAccess = { ok: true } | { ok: false; status: 401 | 403; reason: string };

/** The parts of a request the guard looks at (a fake one is enough in tests). */
export interface AdminRequest {
  headers: IncomingHttpHeaders;
  socket: { remoteAddress?: string | undefined };
}

/** The cookie the login form sets so the dashboard's own polls carry the credential. */
export const ADMIN_COOKIE = "zeptoclaw_admin";

const LOOPBACK = new Set(["127.0.0.1", "::1", "::ffff:127.0.0.1"]);
// A local reverse proxy makes every visitor look like loopback; these headers give it away.
const PROXY_HEADERS = ["x-forwarded-for", "forwarded", "x-real-ip"];

/** Equal-time comparison of two strings of any length: both are hashed to the same size first. */
function sameSecret(a: string, b: string): boolean {
  const ha = createHash("sha256").update(a).digest();
  const hb = createHash("sha256").update(b).digest();
  return timingSafeEqual(ha, hb);
}

/** The cookie value: derived from the token, so the token itself never sits in the browser and a new token logs everyone out. */
function sessionValue(adminToken: string): string {
  return createHmac("sha256", adminToken).update("zeptoclaw admin session v1").digest("base64url");
}

function cookie(headers: IncomingHttpHeaders, name: string): string | undefined {
  for (const part of (headers.cookie ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/**
 * Decides whether a request may see the admin endpoints: with a token, it must come as
 * `Authorization: Bearer <token>` or the login cookie; without one, only from loopback and not
 * through a proxy.
 */
export function checkAdminAccess(req: AdminRequest, adminToken: string): AdminAccess {
  if (adminToken !== "") {
    const auth = req.headers.authorization;
    if (auth !== undefined) {
      const m = /^Bearer[ ]+(\S+)[ ]*$/i.exec(auth);
      if (m && sameSecret(m[1] as string, adminToken)) return { ok: true };
      return { ok: false, status: 401, reason: "wrong admin token" };
    }
    const session = cookie(req.headers, ADMIN_COOKIE);
    if (session !== undefined && sameSecret(session, sessionValue(adminToken))) return { ok: true };
    return { ok: false, status: 401, reason: "admin token required: send Authorization: Bearer <http.admin_token>" };
  }
  const from = req.socket.remoteAddress ?? "";
  if (!LOOPBACK.has(from)) {
    return { ok: false, status: 403, reason: "admin endpoints answer only on localhost unless http.admin_token is set" };
  }
  if (PROXY_HEADERS.some((h) => req.headers[h] !== undefined)) {
    return { ok: false, status: 403, reason: "proxied request to an admin endpoint: set http.admin_token to allow it" };
  }
  return { ok: true };
}

const SECURITY_HEADERS: Record<string, string> = {
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
};
const PAGE_CSP = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

function send(res: ServerResponse, status: number, type: string, body: string | Buffer, headers: Record<string, string> = {}): void {
  res.writeHead(status, { ...SECURITY_HEADERS, "content-type": type, "content-length": String(Buffer.byteLength(body)), ...headers });
  res.end(body);
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function loginPage(message: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>zeptoclaw admin</title><link rel="icon" href="data:,">
<style>body{font:15px system-ui,sans-serif;max-width:26rem;margin:4rem auto;padding:0 1rem}input{width:100%;padding:.5rem;margin:.5rem 0;box-sizing:border-box}</style></head>
<body><h1>zeptoclaw dashboard</h1><p>${escapeHtml(message)}</p>
<form method="post" action="/dashboard/login"><label>Admin token (<code>[http] admin_token</code>)<input type="password" name="token" autocomplete="current-password" required autofocus></label>
<button type="submit">Open the dashboard</button></form></body></html>`;
}

/** One reading of the registry, shaped for the dashboard (cumulative counters; the page takes differences). */
export interface DashboardSnapshot {
  at: number;
  messagesIn: number;
  messagesOut: number;
  errorReplies: number;
  refused: number;
  llmCalls: number;
  llmErrors: number;
  retries: number;
  deadLetters: number;
  busDepth: number;
  activeUsers: number;
  rssBytes: number;
  /** Cumulative bucket counts summed over every label, upper bounds in seconds (last is +Inf). */
  replyLatency: { le: number[]; counts: number[] };
  llmLatency: { le: number[]; counts: number[] };
}

/** One sample as `getMetricsAsJSON` gives it; histogram samples also carry `metricName` (`_bucket`, `_count`, `_sum`). */
interface Sample {
  value: number;
  labels: Record<string, string | number | undefined>;
  metricName?: string;
}

/** Reads the registry into a `DashboardSnapshot`. */
export async function dashboardSnapshot(registry: Registry): Promise<DashboardSnapshot> {
  const all = new Map<string, Sample[]>((await registry.getMetricsAsJSON()).map((m) => [m.name, m.values as Sample[]]));
  const sum = (name: string, keep: (labels: Sample["labels"]) => boolean = () => true): number =>
    (all.get(name) ?? []).reduce((acc, v) => (v.metricName === undefined && keep(v.labels) ? acc + v.value : acc), 0);
  const buckets = (name: string): { le: number[]; counts: number[] } => {
    const byLe = new Map<number, number>();
    for (const v of all.get(name) ?? []) {
      if (v.metricName !== `${name}_bucket`) continue;
      const le = v.labels.le === "+Inf" ? Number.POSITIVE_INFINITY : Number(v.labels.le);
      byLe.set(le, (byLe.get(le) ?? 0) + v.value);
    }
    const le = [...byLe.keys()].sort((a, b) => a - b);
    // JSON has no Infinity: the open bucket is sent as -1.
    return { le: le.map((x) => (Number.isFinite(x) ? x : -1)), counts: le.map((x) => byLe.get(x) ?? 0) };
  };
  const rss = sum("process_resident_memory_bytes");
  return {
    at: Date.now(),
    messagesIn: sum("zeptoclaw_messages_in_total"),
    messagesOut: sum("zeptoclaw_messages_out_total"),
    errorReplies: sum("zeptoclaw_messages_out_total", (l) => l.outcome === "error"),
    refused: sum("zeptoclaw_messages_refused_total"),
    llmCalls: countOf(all.get("zeptoclaw_llm_latency_seconds")),
    llmErrors: sum("zeptoclaw_llm_errors_total"),
    retries: sum("zeptoclaw_retries_total"),
    deadLetters: sum("zeptoclaw_dead_letters_total"),
    busDepth: sum("zeptoclaw_bus_depth"),
    activeUsers: sum("zeptoclaw_active_users"),
    rssBytes: rss > 0 ? rss : process.memoryUsage.rss(),
    replyLatency: buckets("zeptoclaw_reply_latency_seconds"),
    llmLatency: buckets("zeptoclaw_llm_latency_seconds"),
  };
}

function countOf(samples: Sample[] | undefined): number {
  return (samples ?? []).reduce((acc, v) => (v.metricName?.endsWith("_count") ? acc + v.value : acc), 0);
}

function uplotDir(): string {
  // Resolved like an import, so it works whether uplot sits in our node_modules or a hoisted one.
  return dirname(createRequire(import.meta.url).resolve("uplot"));
}

/**
 * Serves `GET /metrics` (Prometheus text), `GET /dashboard` (live charts), the files and
 * `GET /dashboard/data` the page polls, and `POST /dashboard/login` (token form -> cookie),
 * all behind `checkAdminAccess`.
 */
export function registerAdminRoutes(http: HttpRoutes, opts: AdminRoutesOptions): void {
  const { registry, adminToken } = opts;
  const pagePath = opts.pagePath ?? join(PACKAGE_ROOT, "public", "dashboard.html");
  const page = readFileSync(pagePath);
  const assetDir = join(dirname(pagePath), "dashboard");
  const uplot = uplotDir();
  const assets = new Map<string, { type: string; body: Buffer }>([
    ["/dashboard/uplot.js", { type: "text/javascript; charset=utf-8", body: readFileSync(join(uplot, "uPlot.iife.min.js")) }],
    ["/dashboard/uplot.css", { type: "text/css; charset=utf-8", body: readFileSync(join(uplot, "uPlot.min.css")) }],
    ["/dashboard/dashboard.js", { type: "text/javascript; charset=utf-8", body: readFileSync(join(assetDir, "dashboard.js")) }],
  ]);

  const guard = (req: IncomingMessage): void => {
    const access = checkAdminAccess(req, adminToken);
    if (!access.ok) {
      req.resume();
      throw new HttpError(access.status, access.reason, access.status === 401 ? { "www-authenticate": 'Bearer realm="zeptoclaw admin"' } : {});
    }
  };

  // With a token they need it (or its host-only, SameSite cookie), which a page elsewhere
  // cannot send, whatever name it calls the server by: Prometheus may scrape by service name.
  // Without one they trust the loopback peer, and the Host check keeps rebinding pages out.
  const routeOptions = { anyHost: adminToken !== "" };

  http.add("GET", "/metrics", async (req, res) => {
    guard(req);
    send(res, 200, registry.contentType, await registry.metrics());
  }, routeOptions);

  http.add("GET", "/dashboard", (req, res) => {
    const access = checkAdminAccess(req, adminToken);
    if (!access.ok && access.status === 401) {
      send(res, 401, "text/html; charset=utf-8", loginPage("Enter the admin token to see the dashboard."), { "content-security-policy": PAGE_CSP });
      return;
    }
    guard(req);
    send(res, 200, "text/html; charset=utf-8", page, { "content-security-policy": PAGE_CSP });
  }, routeOptions);

  http.add("GET", "/dashboard/*", async (req, res, url) => {
    guard(req);
    if (url.pathname === "/dashboard/data") {
      sendJson(res, 200, await dashboardSnapshot(registry), SECURITY_HEADERS);
      return;
    }
    const asset = assets.get(url.pathname);
    if (!asset) throw new HttpError(404, `no such dashboard file: ${url.pathname.slice(0, 100)}`);
    send(res, 200, asset.type, asset.body, { "cache-control": "no-cache" });
  }, routeOptions);

  http.add("POST", "/dashboard/login", async (req, res) => {
    if (adminToken === "") {
      req.resume();
      throw new HttpError(404, "no login here: http.admin_token is not set, the dashboard answers on localhost only");
    }
    const type = req.headers["content-type"] ?? "";
    if (!/^application\/x-www-form-urlencoded\s*(;|$)/i.test(type)) {
      req.resume();
      throw new HttpError(415, "send the login form as application/x-www-form-urlencoded");
    }
    const body = await readBody(req, 4096);
    let token: string | null;
    try {
      token = new URLSearchParams(new TextDecoder("utf-8", { fatal: true }).decode(body)).get("token");
    } catch {
      throw new HttpError(400, "login form is not valid UTF-8");
    }
    if (token === null || token === "") throw new HttpError(400, "token: required");
    if (!sameSecret(token, adminToken)) {
      send(res, 401, "text/html; charset=utf-8", loginPage("That token is not right. Try again."), { "content-security-policy": PAGE_CSP });
      return;
    }
    const secure = req.headers["x-forwarded-proto"] === "https" ? "; Secure" : "";
    res.writeHead(303, {
      ...SECURITY_HEADERS,
      location: "/dashboard",
      "set-cookie": `${ADMIN_COOKIE}=${sessionValue(adminToken)}; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200${secure}`,
      "content-length": "0",
    });
    res.end();
  }, routeOptions);
}
