import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** A chat-completions request as the fake received it. */
export interface FakeChatRequest {
  model: string;
  messages: { role: string; content: string | null; tool_call_id?: string; tool_calls?: unknown[] }[];
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  tools?: { function: { name: string } }[];
  authorization?: string;
}

/** What the fake answers: text, or tool calls the client must run. */
export type FakeAnswer = string | { toolCalls: { name: string; arguments: string }[] };

/** A fault to inject into the next request. */
export type Fault =
  | { status: number; retryAfter?: number; message?: string }
  | { hang: true }
  | { breakStream: true }
  | { malformed: true }
  | { resetConnection: true };

/** Options of `startFakeOpenAi`. */
export interface FakeOpenAiOptions {
  /** Delay before answering, in ms. */
  latencyMs?: number;
  /** Builds the answer; echoes the last user message by default. */
  answer?: (req: FakeChatRequest) => FakeAnswer;
  /** Keep every request in `requests` (off for the benchmark). */
  record?: boolean;
  /** Answer streamed requests with plain JSON, as some OpenAI-compatible servers do. */
  ignoreStream?: boolean;
  /** Characters per streamed chunk. */
  chunkSize?: number;
  /** Pause between streamed chunks, so a client can be seen streaming. */
  chunkDelayMs?: number;
  /**
   * Stream tool calls without `index`, as Gemini's OpenAI-compatible endpoint and some proxies
   * do: each call's first chunk carries its id and name, the next its arguments.
   */
  toolCallsWithoutIndex?: boolean;
}

/** A running fake OpenAI-compatible server. */
export interface FakeOpenAi {
  /** Base URL including `/v1`, as `llm.base_url` takes it. */
  url: string;
  requests: FakeChatRequest[];
  /** Requests answered so far (also counted when not recorded). */
  count: number;
  /** Faults consumed in order, one per request. */
  faults: Fault[];
  /**
   * Every `faultEvery`-th request (0: none) gets the next of the mixed faults (429, 5xx, a
   * broken stream, malformed JSON, a reset), in turn: a fault rate without chance, so a run
   * never holds more failures in a row than the rate implies.
   */
  faultEvery: number;
  options: FakeOpenAiOptions;
  close(): Promise<void>;
}

/** Echo of the last user message: the default answer. */
export function echoAnswer(req: FakeChatRequest): string {
  const last = [...req.messages].reverse().find((m) => m.role === "user");
  return `echo: ${last?.content ?? ""}`;
}

/** The parsed body, and its length in bytes (the prompt's size, for `usage`). */
function readJson(req: IncomingMessage): Promise<{ json: unknown; bytes: number }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      try {
        const raw = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
        resolve({ json: JSON.parse(raw.toString("utf8")), bytes: raw.length });
      } catch (err) {
        reject(err);
      }
    });
    req.on("error", reject);
  });
}

const MIXED_FAULTS: Fault[] = [
  { status: 429, retryAfter: 0 },
  { status: 500 },
  { status: 503 },
  { breakStream: true },
  { malformed: true },
  { resetConnection: true },
];

/**
 * Starts a local OpenAI-compatible server on 127.0.0.1: chat completions with SSE
 * streaming and tool calls, latency, and injectable faults (429 with Retry-After, 5xx,
 * hangs, broken streams, malformed JSON, connection resets).
 */
export async function startFakeOpenAi(options: FakeOpenAiOptions = {}): Promise<FakeOpenAi> {
  const open = new Set<ServerResponse>();
  const state: FakeOpenAi = {
    url: "",
    requests: [],
    count: 0,
    faults: [],
    faultEvery: 0,
    options,
    close: async () => undefined,
  };
  let seq = 0;

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (req.method === "GET" && req.url?.endsWith("/models")) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ object: "list", data: [{ id: "fake-model", object: "model" }] }));
      return;
    }
    if (req.method !== "POST" || !req.url?.endsWith("/chat/completions")) {
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { message: "not found" } }));
      return;
    }
    const read = await readJson(req);
    const body = read.json as FakeChatRequest;
    // Tokens as a quarter of the bytes, like a tokenizer's rough rule; the request's size
    // stands in for the prompt's, rather than serializing the history a second time.
    const prompt = Math.ceil(read.bytes / 4);
    state.count++;
    if (state.options.record !== false) state.requests.push({ ...body, ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}) });
    let fault = state.faults.shift();
    if (!fault && state.faultEvery > 0 && state.count % state.faultEvery === 0) {
      fault = MIXED_FAULTS[(state.count / state.faultEvery) % MIXED_FAULTS.length];
    }
    if (fault && "hang" in fault) {
      open.add(res);
      res.on("close", () => open.delete(res));
      return;
    }
    if (fault && "resetConnection" in fault) {
      req.socket.destroy();
      return;
    }
    if (fault && "status" in fault) {
      const headers: Record<string, string> = { "content-type": "application/json" };
      if (fault.retryAfter !== undefined) headers["retry-after"] = String(fault.retryAfter);
      res.writeHead(fault.status, headers);
      res.end(JSON.stringify({ error: { message: fault.message ?? `injected ${fault.status}`, type: "fake" } }));
      return;
    }
    const latency = state.options.latencyMs ?? 0;
    if (latency > 0) await new Promise((r) => setTimeout(r, latency));
    const answer = (state.options.answer ?? echoAnswer)(body);
    const id = `chatcmpl-${++seq}`;
    const created = Math.floor(Date.now() / 1000);
    const chunk = (delta: unknown, finish: string | null = null): string =>
      `data: ${JSON.stringify({ id, object: "chat.completion.chunk", created, model: body.model, choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    if (fault && "malformed" in fault) {
      if (body.stream) {
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.end("data: {not json\n\n");
      } else {
        res.writeHead(200, { "content-type": "application/json" });
        res.end("{not json");
      }
      return;
    }
    if (!body.stream || state.options.ignoreStream) {
      const message =
        typeof answer === "string"
          ? { role: "assistant", content: answer }
          : {
              role: "assistant",
              content: null,
              tool_calls: answer.toolCalls.map((t, i) => ({ id: `call_${seq}_${i}`, type: "function", function: { name: t.name, arguments: t.arguments } })),
            };
      res.writeHead(200, { "content-type": "application/json" });
      const completion = Math.ceil(JSON.stringify(message).length / 4);
      const usage = { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
      res.end(JSON.stringify({ id, object: "chat.completion", created, model: body.model, choices: [{ index: 0, message, finish_reason: typeof answer === "string" ? "stop" : "tool_calls" }], usage }));
      return;
    }
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    if (typeof answer === "string") {
      const size = state.options.chunkSize ?? 16;
      let out = chunk({ role: "assistant", content: "" });
      for (let i = 0; i < answer.length; i += size) out += chunk({ content: answer.slice(i, i + size) });
      if (fault && "breakStream" in fault) {
        res.write(out.slice(0, Math.max(1, Math.floor(out.length / 2))));
        res.socket?.destroy();
        return;
      }
      if (state.options.chunkDelayMs) {
        res.write(chunk({ role: "assistant", content: "" }));
        for (let i = 0; i < answer.length; i += size) {
          res.write(chunk({ content: answer.slice(i, i + size) }));
          await new Promise((r) => setTimeout(r, state.options.chunkDelayMs));
        }
        out = "";
      }
      out += chunk({}, "stop");
      if (body.stream_options?.include_usage) {
        const completion = Math.ceil(answer.length / 4);
        out += `data: ${JSON.stringify({ id, object: "chat.completion.chunk", created, model: body.model, choices: [], usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion } })}\n\n`;
      }
      out += "data: [DONE]\n\n";
      res.end(out);
      return;
    }
    let out = chunk({ role: "assistant", content: null });
    const at = (i: number): { index?: number } => (state.options.toolCallsWithoutIndex ? {} : { index: i });
    answer.toolCalls.forEach((t, i) => {
      out += chunk({ tool_calls: [{ ...at(i), id: `call_${seq}_${i}`, type: "function", function: { name: t.name, arguments: "" } }] });
      out += chunk({ tool_calls: [{ ...at(i), function: { arguments: t.arguments } }] });
    });
    out += chunk({}, "tool_calls");
    out += "data: [DONE]\n\n";
    res.end(out);
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(400, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { message: "bad request" } }));
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  state.close = async () => {
    for (const res of open) res.destroy();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return state;
}
