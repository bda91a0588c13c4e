import { createServer, type Server, type ServerResponse } from "node:http";
import { connect, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { MAX_UNREAD_BYTES, SseHub } from "../../src/channels/webchat/sse-hub.js";

let server: Server | undefined;
let hub: SseHub | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  hub?.close();
  await new Promise((r) => (server ? server.close(r) : r(undefined)));
  server = undefined;
});

/** A real server whose one route subscribes to `key`; resolves with its port and the subscribed responses. */
async function serve(h: SseHub): Promise<{ port: number; subscribed: ServerResponse[] }> {
  const subscribed: ServerResponse[] = [];
  server = createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    h.add(new URL(req.url ?? "/", "http://x").searchParams.get("user") ?? "", res);
    subscribed.push(res);
  });
  await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
  return { port: (server!.address() as { port: number }).port, subscribed };
}

/** Opens a stream over a raw socket; `read` false leaves it unread, as a frozen tab does. */
async function open(port: number, user: string, read: boolean): Promise<Socket> {
  const s = connect(port, "127.0.0.1");
  sockets.push(s);
  await new Promise((r) => s.once("connect", r));
  s.write(`GET /?user=${user} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n`);
  if (read) s.resume();
  else s.pause();
  return s;
}

describe("SseHub", () => {
  it("drops a subscriber that stopped reading once it holds a megabyte, and keeps the one that reads", async () => {
    hub = new SseHub();
    const { port, subscribed } = await serve(hub);
    await open(port, "frozen", false);
    await open(port, "reading", true);
    for (let i = 0; i < 100 && subscribed.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
    expect(subscribed).toHaveLength(2);
    const reply = "x".repeat(64 * 1024);
    let peak = 0;
    // 64 MB in all: far more than the kernel's socket buffers take for the frozen one.
    for (let i = 0; i < 1_000 && hub.has("frozen"); i++) {
      hub.emit("frozen", "reply", { text: reply });
      hub.emit("reading", "reply", { text: reply });
      peak = Math.max(peak, subscribed[0]!.writableLength);
      await new Promise((r) => setImmediate(r));
    }
    expect(hub.has("frozen")).toBe(false);
    // Held at most the cap and one frame more, never the whole backlog.
    expect(peak).toBeLessThanOrEqual(MAX_UNREAD_BYTES + reply.length + 100);
    expect(peak).toBeGreaterThan(MAX_UNREAD_BYTES);
    expect(hub.has("reading")).toBe(true);
  });
});
