import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { type AddressInfo, isIP } from "node:net";
import type { Logger } from "pino";

/** Handles one request; `url` is already parsed. */
export type RouteHandler = (req: IncomingMessage, res: ServerResponse, url: URL) => void | Promise<void>;

/** How a route is served. */
export interface RouteOptions {
  /**
   * Answer whatever host name the request gives: for endpoints called from outside under a
   * public name (a platform's webhook, verified by its secret) and for health probes.
   */
  anyHost?: boolean;
}

/** Where channels and the gateway register their endpoints on the shared server. */
export interface HttpRoutes {
  /** `path` is exact, or a prefix when it ends with `*` (e.g. `/api/messages/*`). */
  add(method: "GET" | "POST" | "PUT" | "DELETE", path: string, handler: RouteHandler, options?: RouteOptions): void;
}

/** Options of `GatewayHttpServer`. */
export interface HttpServerOptions {
  /**
   * Host names besides IP addresses and localhost that requests may name (`http.allowed_hosts`);
   * one starting with "." also admits its subdomains.
   */
  allowedHosts?: readonly string[];
}

/** A host name as compared: lower case, without the trailing dot of a fully qualified name. */
function canonicalName(name: string): string {
  const n = name.toLowerCase();
  return n.endsWith(".") ? n.slice(0, -1) : n;
}

/** The name a Host header gives, without its port and an IPv6 address's brackets. */
function hostName(header: string): string {
  const h = header.trim();
  if (h.startsWith("[")) return h.slice(1, h.indexOf("]") >>> 0);
  const colon = h.lastIndexOf(":");
  return canonicalName(colon >= 0 ? h.slice(0, colon) : h);
}

/**
 * Whether a request's Host header names this server in a way no other site can: an IP address,
 * localhost, or a configured name. A web page the user opens elsewhere can point a name of its
 * own at 127.0.0.1 (DNS rebinding); the browser then treats the gateway as that page's origin
 * and lets it read the web chat's streams and the loopback-only admin endpoints. Its requests
 * carry its own name in Host, which this refuses.
 */
export function isAllowedHost(header: string | undefined, allowed: readonly string[]): boolean {
  // Browsers always send Host: a request without one is not a page's.
  if (header === undefined) return true;
  const name = hostName(header);
  if (isIP(name) !== 0 || name === "localhost" || name.endsWith(".localhost")) return true;
  return allowed.some((a) => {
    const entry = canonicalName(a);
    return entry.startsWith(".") ? name === entry.slice(1) || name.endsWith(entry) : name === entry;
  });
}

/** A client error with the status and reason to answer with. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** Writes a JSON response. */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(text),
    "cache-control": "no-store",
    ...headers,
  });
  res.end(text);
}

/** Reads a request body up to `limit` bytes; over it, rejects with a 413 `HttpError`. */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > limit) {
    req.resume();
    return Promise.reject(new HttpError(413, `body too large: ${declared} bytes, the limit is ${limit}`, { connection: "close" }));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on("data", (chunk: Buffer) => {
      if (failed) return;
      size += chunk.length;
      if (size > limit) {
        failed = true;
        chunks.length = 0;
        reject(new HttpError(413, `body too large: over ${limit} bytes`, { connection: "close" }));
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => {
      if (!failed) resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size));
    });
    req.on("error", (err) => {
      if (!failed) {
        failed = true;
        reject(new HttpError(400, `could not read the body: ${err.message}`));
      }
    });
  });
}

interface Route {
  method: string;
  path: string;
  prefix: boolean;
  handler: RouteHandler;
  anyHost: boolean;
}

/** The gateway's one HTTP server: health, readiness, the web chat and webhook endpoints. */
export class GatewayHttpServer implements HttpRoutes {
  private readonly routes: Route[] = [];
  private readonly server: Server;

  constructor(
    private readonly logger: Logger,
    private readonly options: HttpServerOptions = {},
  ) {
    this.server = createServer((req, res) => void this.dispatch(req, res));
    // Slowloris guard: headers must arrive promptly; bodies within the request timeout.
    this.server.headersTimeout = 10_000;
    this.server.requestTimeout = 30_000;
    this.server.keepAliveTimeout = 5_000;
    // Requests Node's parser refuses (bad bytes in the request line, huge headers) still
    // get a reason, not an empty 400.
    this.server.on("clientError", (err: NodeJS.ErrnoException, socket) => {
      if (err.code === "ECONNRESET" || !socket.writable) {
        socket.destroy();
        return;
      }
      const timedOut = err.code === "ERR_HTTP_REQUEST_TIMEOUT";
      const status = err.code === "HPE_HEADER_OVERFLOW" ? "431 Request Header Fields Too Large" : timedOut ? "408 Request Timeout" : "400 Bad Request";
      const reason = timedOut ? "the request did not arrive in time" : `malformed HTTP request (${err.code ?? "parse error"})`;
      const body = JSON.stringify({ error: reason });
      socket.end(
        `HTTP/1.1 ${status}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      );
    });
  }

  add(method: Route["method"], path: string, handler: RouteHandler, options: RouteOptions = {}): void {
    const prefix = path.endsWith("*");
    this.routes.push({ method, path: prefix ? path.slice(0, -1) : path, prefix, handler, anyHost: options.anyHost === true });
  }

  private async dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let url: URL;
    try {
      url = new URL(req.url ?? "/", "http://localhost");
    } catch {
      sendJson(res, 400, { error: "malformed request URL" });
      return;
    }
    const matches = this.routes.filter((r) => (r.prefix ? url.pathname.startsWith(r.path) : url.pathname === r.path));
    const route = matches.find((r) => r.method === req.method);
    if (!route) {
      if (matches.length > 0) {
        sendJson(res, 405, { error: `method ${req.method} not allowed here` }, { allow: [...new Set(matches.map((r) => r.method))].join(", ") });
      } else {
        sendJson(res, 404, { error: `no such endpoint: ${url.pathname}` });
      }
      req.resume();
      return;
    }
    if (!route.anyHost && !isAllowedHost(req.headers.host, this.options.allowedHosts ?? [])) {
      sendJson(res, 403, { error: `host "${hostName(req.headers.host ?? "")}" is not allowed: name this server by IP address or localhost, or add the name to http.allowed_hosts` });
      req.resume();
      return;
    }
    try {
      await route.handler(req, res, url);
    } catch (err) {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (err instanceof HttpError) {
        sendJson(res, err.status, { error: err.message }, err.headers);
        if (err.headers.connection === "close") req.destroy();
        return;
      }
      this.logger.error({ err, path: url.pathname }, "request handler failed");
      sendJson(res, 500, { error: "internal error" });
    }
  }

  /** Starts listening; resolves with the bound port. */
  listen(port: number, host: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, host, () => {
        this.server.off("error", reject);
        resolve((this.server.address() as AddressInfo).port);
      });
    });
  }

  /** Stops taking connections and closes idle ones; open streams end with `closeAll`. */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
      setTimeout(() => this.server.closeAllConnections(), 1_000).unref();
    });
  }
}
