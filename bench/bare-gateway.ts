import { Agent, createServer, type IncomingMessage, request, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { readChatStream } from "../src/agent/chat-stream.js";

/**
 * A stand-in for the gateway on the web chat path that does only what no gateway can skip:
 * the three HTTP legs of a message (the POST answered 202, a streamed chat call to the LLM
 * whose SSE body is parsed by the gateway's own reader, the reply written to the user's
 * event stream), on plain
 * node:http with keep-alive, and nothing else: no bus, journal, sessions, SDK, validation,
 * logging or metrics. `zeptoclaw bench --path webchat --bare-gateway` runs it in place of
 * the gateway, under the same load generator and fake LLM: what a node:http gateway doing
 * only these legs answers on this machine with this harness, and what its legs cost. A
 * floor under the gateway's own cost (targets 2b and 4), measured rather than estimated.
 *
 * It reads the environment the bench gives the gateway (`ZEPTOCLAW_LLM_BASE_URL`,
 * `ZEPTOCLAW_LLM_API_KEY`) and prints the gateway's ready line with its port.
 */
function main(): void {
  const llm = new URL(`${(process.env.ZEPTOCLAW_LLM_BASE_URL ?? "").replace(/\/$/, "")}/chat/completions`);
  const auth = `Bearer ${process.env.ZEPTOCLAW_LLM_API_KEY ?? ""}`;
  const agent = new Agent({ keepAlive: true, maxSockets: 256, timeout: 15_000 });
  const streams = new Map<string, ServerResponse>();
  let seq = 0;

  const reply = (user: string, id: string, status: "done" | "error", text: string): void => {
    streams.get(user)?.write(`event: reply\ndata: ${JSON.stringify({ id, status, text })}\n\n`);
  };

  const ask = (user: string, id: string, text: string): void => {
    // One reply per message: an error after the reply (a late socket error, say) is dropped.
    let answered = false;
    const once = (status: "done" | "error", out: string): void => {
      if (answered) return;
      answered = true;
      reply(user, id, status, out);
    };
    const body = JSON.stringify({ model: "bench", messages: [{ role: "user", content: text }], stream: true });
    const req = request(
      llm,
      { method: "POST", agent, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body), authorization: auth } },
      (res) => {
        // The gateway's own stream reader: the part of the LLM leg every gateway needs.
        let answer = "";
        readChatStream(res, (chunk) => {
          answer += chunk.choices?.[0]?.delta?.content ?? "";
        }).then(
          () => once(res.statusCode === 200 ? "done" : "error", answer),
          () => once("error", "the LLM call failed"),
        );
      },
    );
    req.on("error", () => once("error", "the LLM call failed"));
    req.setTimeout(15_000, () => req.destroy(new Error("the LLM did not answer in time")));
    req.end(body);
  };

  const post = (req: IncomingMessage, res: ServerResponse): void => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      let msg: { user?: unknown; text?: unknown };
      try {
        msg = JSON.parse(Buffer.concat(chunks).toString("utf8")) as typeof msg;
      } catch {
        res.writeHead(400).end();
        return;
      }
      if (typeof msg.user !== "string" || typeof msg.text !== "string") {
        res.writeHead(400).end();
        return;
      }
      const id = `webchat:${(seq++).toString(16)}`;
      const out = JSON.stringify({ id });
      res.writeHead(202, { "content-type": "application/json", "content-length": Buffer.byteLength(out) });
      res.end(out);
      ask(msg.user, id, msg.text);
    });
  };

  const server = createServer((req, res) => {
    const url = req.url ?? "/";
    if (req.method === "POST" && url === "/api/messages") return post(req, res);
    if (req.method === "GET" && url.startsWith("/api/stream?user=")) {
      const user = decodeURIComponent(url.slice("/api/stream?user=".length));
      res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-store" });
      res.write(": connected\n\n");
      req.socket.setNoDelay(true);
      streams.set(user, res);
      res.on("close", () => streams.get(user) === res && streams.delete(user));
      return;
    }
    res.writeHead(404).end();
  });
  server.keepAliveTimeout = 5_000;
  server.listen(0, "127.0.0.1", () => {
    process.stdout.write(`${JSON.stringify({ msg: "zeptoclaw gateway ready (bare stand-in)", port: (server.address() as AddressInfo).port })}\n`);
  });
  const stop = (): void => {
    for (const res of streams.values()) res.end();
    agent.destroy();
    server.close(() => process.exit(0));
    server.closeAllConnections();
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}

main();
