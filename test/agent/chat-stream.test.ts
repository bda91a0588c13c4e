import { createServer, get, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { PassThrough } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { type ChatChunk, readChatStream } from "../../src/agent/chat-stream.js";
import { LlmError } from "../../src/errors.js";

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Feeds `pieces` to readChatStream one at a time, each its own read, then ends the body (or destroys it). */
async function read(pieces: (string | Buffer)[], end: "end" | "destroy" | Error = "end"): Promise<ChatChunk[]> {
  const body = new PassThrough();
  const chunks: ChatChunk[] = [];
  let failure: { err: unknown } | undefined;
  const reading = readChatStream(body, (c) => chunks.push(c)).catch((err: unknown) => void (failure = { err }));
  for (const p of pieces) {
    if (failure) break;
    body.write(p);
    await turn();
  }
  if (!failure) {
    if (end === "end") body.end();
    else if (end === "destroy") body.destroy();
    else body.destroy(end);
  }
  await reading;
  if (failure) throw failure.err;
  return chunks;
}

const chunk = (content: string, finish: string | null = null): string =>
  JSON.stringify({ choices: [{ index: 0, delta: { content }, finish_reason: finish }] });
const contents = (chunks: ChatChunk[]): string => chunks.map((c) => c.choices[0]?.delta.content ?? "").join("");
const isLlmError = (pattern: RegExp) => (e: unknown) => e instanceof LlmError && e.retryable && pattern.test(e.message);

describe("readChatStream", () => {
  it("reads events split anywhere, in any line ending, with comments, multi-line data and a byte-order mark", async () => {
    const whole = Buffer.from(
      [
        "\uFEFF: keep-alive comment\r\n\r\n",
        `data: ${chunk("héllo ")}\r\n\r\n`,
        `event: message\ndata:${chunk("wörld")}\n\n`,
        // One event's data over two lines is joined with "\n" (JSON does not mind); read byte
        // by byte, the "\r" and "\n" between them arrive apart and still make one line break.
        `data: {"choices":[{"index":0,\r\ndata: "delta":{"content":"!"},"finish_reason":"stop"}]}\r\r`,
        "data: [DONE]\n\n",
        "data: this is never parsed\n\n",
      ].join(""),
      "utf8",
    );
    // Byte by byte: splits the mark, the "\r\n" pairs and the two bytes of "é" and "ö".
    expect(contents(await read([...whole].map((b) => Buffer.from([b]))))).toBe("héllo wörld!");
    expect(contents(await read([whole]))).toBe("héllo wörld!");
  });

  it("takes a last event that ends in a lone \\r at the very end of the body", async () => {
    expect(contents(await read([`data: ${chunk("a")}\r\rdata: ${chunk("b", "stop")}\r\r`]))).toBe("ab");
  });

  it("drops an event cut off by the end of the body, as the SSE rules say", async () => {
    expect(contents(await read([`data: ${chunk("a", "stop")}\n\n`, `data: ${chunk("b")}`]))).toBe("a");
  });

  it("rejects an answer that ends with neither [DONE] nor a finish_reason: it was cut off", async () => {
    await expect(read([`data: ${chunk("half an ans")}\n\n`])).rejects.toSatisfy(isLlmError(/ended before it was complete/));
    await expect(read([])).rejects.toSatisfy(isLlmError(/ended before it was complete/));
    expect(contents(await read([`data: ${chunk("whole")}\n\ndata: [DONE]\n\n`]))).toBe("whole");
  });

  it("rejects with a retryable LlmError when the provider sends an error mid-answer", async () => {
    await expect(read([`data: ${chunk("a")}\n\n`, 'data: {"error":{"message":"overloaded"}}\n\n'])).rejects.toSatisfy(isLlmError(/mid-answer: overloaded/));
    await expect(read(['event: error\ndata: {"message":"server busy"}\n\n'])).rejects.toSatisfy(isLlmError(/mid-answer: server busy/));
    await expect(read(['{"error":{"message":"no such model"}}'])).rejects.toSatisfy(isLlmError(/mid-answer: no such model/));
  });

  it("rejects on a chunk that is not JSON, and when the chunk handler throws, and stops reading", async () => {
    await expect(read(["data: {not json\n\n"])).rejects.toBeInstanceOf(SyntaxError);
    const body = new PassThrough();
    const seen: string[] = [];
    const reading = readChatStream(body, (c) => {
      seen.push(contents([c]));
      throw new Error("the sink failed");
    });
    body.write(`data: ${chunk("a")}\n\ndata: ${chunk("b")}\n\n`);
    body.end(`data: ${chunk("c", "stop")}\n\n`);
    await expect(reading).rejects.toThrow("the sink failed");
    expect(seen).toEqual(["a"]);
  });

  it("rejects on a body destroyed before its end, with or without an error", async () => {
    const aborted = Object.assign(new Error("This operation was aborted"), { name: "AbortError" });
    await expect(read([`data: ${chunk("a")}\n\n`], aborted)).rejects.toBe(aborted);
    await expect(read([`data: ${chunk("a")}\n\n`], "destroy")).rejects.toSatisfy(isLlmError(/broke off/));
  });

  it("rejects when the connection breaks mid-answer", async () => {
    const server = createServer((_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(`data: ${chunk("half an ans")}\n\n`, () => setTimeout(() => res.socket?.destroy(), 5));
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const { port } = server.address() as AddressInfo;
    const res = await new Promise<IncomingMessage>((resolve, reject) => get({ host: "127.0.0.1", port, path: "/" }, resolve).on("error", reject));
    const seen: ChatChunk[] = [];
    await expect(readChatStream(res, (c) => seen.push(c))).rejects.toMatchObject({ code: "ECONNRESET" });
    expect(contents(seen)).toBe("half an ans");
  });

  it("takes one JSON completion from a server that ignored stream: true, whatever the body's label", async () => {
    const answer = {
      id: "chatcmpl-1",
      object: "chat.completion",
      created: 1,
      model: "m",
      choices: [{ index: 0, finish_reason: "tool_calls", message: { role: "assistant", content: "let me look", tool_calls: [{ id: "call_1", type: "function", function: { name: "current_time", arguments: "{}" } }] } }],
      usage: { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 },
    };
    const text = `\uFEFF \n${JSON.stringify(answer)}`;
    const [one, ...rest] = await read([text.slice(0, 9), text.slice(9)]);
    expect(rest).toEqual([]);
    expect(one?.choices[0]).toMatchObject({ finish_reason: "tool_calls", delta: { content: "let me look", tool_calls: [{ index: 0, id: "call_1", function: { name: "current_time", arguments: "{}" } }] } });
    expect(one?.usage).toEqual(answer.usage);
  });
});
