import { createServer, get, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { type ChatChunk, readChatStream } from "../../src/agent/chat-stream.js";
import { LlmError } from "../../src/errors.js";

let server: Server | undefined;
afterEach(async () => {
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
});

/** Serves `pieces` as one SSE body, each piece written on its own, then ends it (or breaks the socket). */
async function body(pieces: (string | Buffer)[], end: "end" | "break" = "end"): Promise<IncomingMessage> {
  server = createServer((_req, res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    let i = 0;
    const next = (): void => {
      if (i < pieces.length) {
        res.write(pieces[i++], () => setTimeout(next, 1));
        return;
      }
      if (end === "end") res.end();
      else res.socket?.destroy();
    };
    next();
  });
  await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return new Promise((resolve, reject) => get({ host: "127.0.0.1", port, path: "/" }, resolve).on("error", reject));
}

async function read(pieces: (string | Buffer)[], end: "end" | "break" = "end"): Promise<ChatChunk[]> {
  const chunks: ChatChunk[] = [];
  await readChatStream(await body(pieces, end), (c) => chunks.push(c));
  return chunks;
}

const chunk = (content: string): string => JSON.stringify({ choices: [{ index: 0, delta: { content } }] });
const contents = (chunks: ChatChunk[]): string => chunks.map((c) => c.choices[0]?.delta.content ?? "").join("");

describe("readChatStream", () => {
  it("reads events split anywhere, in any line ending, with comments and multi-line data", async () => {
    const whole = Buffer.from(
      [
        ": keep-alive comment\r\n\r\n",
        `data: ${chunk("héllo ")}\r\n\r\n`,
        `event: message\ndata:${chunk("wörld")}\n\n`,
        // One event's data over two lines is joined with "\n" (JSON does not mind); read byte by
        // byte, the "\r" and "\n" between them arrive apart and must still make one line break.
        `data: {"choices":[{"index":0,\r\ndata: "delta":{"content":"!"}}]}\r\r`,
        "data: [DONE]\n\n",
        "data: this is never parsed\n\n",
      ].join(""),
      "utf8",
    );
    // Byte by byte: splits "\r\n" pairs and the two bytes of "é" and "ö" across reads.
    const bytes = [...whole].map((b) => Buffer.from([b]));
    expect(contents(await read(bytes))).toBe("héllo wörld!");
    expect(contents(await read([whole]))).toBe("héllo wörld!");
  });

  it("drops an event cut off by the end of the body, as the SSE rules say", async () => {
    expect(contents(await read([`data: ${chunk("a")}\n\n`, `data: ${chunk("b")}`]))).toBe("a");
  });

  it("rejects with a retryable LlmError when the provider sends an error mid-answer", async () => {
    const inData = readChatStream(await body([`data: ${chunk("a")}\n\n`, 'data: {"error":{"message":"overloaded"}}\n\n']), () => undefined);
    await expect(inData).rejects.toSatisfy((e) => e instanceof LlmError && e.retryable && /mid-answer: overloaded/.test(e.message));
    const asEvent = readChatStream(await body(['event: error\ndata: {"message":"server busy"}\n\n']), () => undefined);
    await expect(asEvent).rejects.toSatisfy((e) => e instanceof LlmError && /mid-answer: server busy/.test(e.message));
  });

  it("rejects on a chunk that is not JSON, and on a body that breaks before its end", async () => {
    await expect(read(["data: {not json\n\n"])).rejects.toBeInstanceOf(SyntaxError);
    await expect(read([`data: ${chunk("half an ans")}\n\n`], "break")).rejects.toBeInstanceOf(Error);
  });

  it("rejects when the chunk handler throws, and stops reading", async () => {
    const seen: string[] = [];
    const reading = readChatStream(await body([`data: ${chunk("a")}\n\ndata: ${chunk("b")}\n\n`, `data: ${chunk("c")}\n\n`]), (c) => {
      seen.push(contents([c]));
      throw new Error("the sink failed");
    });
    await expect(reading).rejects.toThrow("the sink failed");
    expect(seen).toEqual(["a"]);
  });
});
