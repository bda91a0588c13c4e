import type { IncomingMessage } from "node:http";
import type OpenAIType from "openai";
import { LlmError } from "../errors.js";

export type ChatChunk = OpenAIType.ChatCompletionChunk;

/**
 * Reads a streamed chat completion (server-sent events) from the response body our `fetch`
 * hands the SDK, calling `onChunk` for each JSON chunk, and resolves at the end of the body.
 *
 * The SDK's own reader runs every chunk through three nested async generators and copies
 * bytes twice on the way; on a short answer that was a tenth of the gateway's CPU per
 * message. This one parses the lines of each `data` event as it arrives. It follows the SSE
 * rules the SDK follows: `data:` lines of one event are joined with "\n", a blank line ends
 * the event, `:` lines are comments, an event cut off by the end of the body is dropped, and
 * `[DONE]` ends the answer. An error event, or a chunk carrying `error`, rejects with a
 * retryable LlmError (the provider failed mid-answer); a chunk that is not JSON rejects with
 * the SyntaxError; a body that breaks before its end rejects with the body's error.
 *
 * Some OpenAI-compatible servers ignore `stream: true` and answer with one JSON completion:
 * that answer is handed on as a single chunk, instead of passing for an empty reply.
 */
export function readChatStream(body: IncomingMessage, onChunk: (chunk: ChatChunk) => void): Promise<void> {
  if (/^application\/json\b/i.test(body.headers["content-type"] ?? "")) return readWholeAnswer(body, onChunk);
  return new Promise<void>((resolve, reject) => {
    let buf = "";
    let data: string[] = [];
    let event = "";
    let done = false;
    let settled = false;
    const fail = (err: unknown): void => {
      if (settled) return;
      settled = true;
      body.destroy();
      reject(err);
    };
    const dispatch = (): void => {
      if (data.length === 0) {
        event = "";
        return;
      }
      const text = data.length === 1 ? (data[0] as string) : data.join("\n");
      const name = event;
      data = [];
      event = "";
      if (done) return;
      if (text.startsWith("[DONE]")) {
        done = true;
        return;
      }
      const parsed = JSON.parse(text) as ChatChunk & { error?: unknown; message?: unknown };
      if (name === "error" || (parsed && parsed.error)) {
        const detail = parsed.error ?? parsed.message;
        const message = typeof detail === "object" && detail !== null && "message" in detail ? String((detail as { message: unknown }).message) : String(detail);
        throw new LlmError("E_LLM_STREAM", `the LLM provider failed mid-answer: ${message}`, { retryable: true });
      }
      onChunk(parsed);
    };
    const line = (l: string): void => {
      if (l === "") return dispatch();
      if (l.charCodeAt(0) === 58 /* ":" */) return;
      const colon = l.indexOf(":");
      const field = colon < 0 ? l : l.slice(0, colon);
      let value = colon < 0 ? "" : l.slice(colon + 1);
      if (value.charCodeAt(0) === 32 /* " " */) value = value.slice(1);
      if (field === "data") data.push(value);
      else if (field === "event") event = value;
    };
    body.setEncoding("utf8");
    body.on("data", (chunk: string) => {
      if (settled) return;
      buf += chunk;
      try {
        let start = 0;
        for (;;) {
          const nl = buf.indexOf("\n", start);
          const cr = buf.indexOf("\r", start);
          if (nl < 0 && cr < 0) break;
          let end: number;
          let next: number;
          if (cr >= 0 && (nl < 0 || cr < nl)) {
            // "\r\n" or a lone "\r"; a "\r" at the very end waits for the next chunk.
            if (cr === buf.length - 1) break;
            end = cr;
            next = buf.charCodeAt(cr + 1) === 10 ? cr + 2 : cr + 1;
          } else {
            end = nl as number;
            next = end + 1;
          }
          line(buf.slice(start, end));
          start = next;
        }
        buf = start === 0 ? buf : buf.slice(start);
      } catch (err) {
        fail(err);
      }
    });
    body.once("end", () => {
      if (settled) return;
      settled = true;
      resolve();
    });
    body.once("error", fail);
    body.once("close", () => {
      // A body destroyed without an error (or closed before its end) is a broken stream.
      if (!settled) fail(new LlmError("E_LLM_STREAM", "the LLM provider's answer stream broke off", { retryable: true }));
    });
  });
}

/** A non-streamed completion as the one chunk a stream would have ended with. */
async function readWholeAnswer(body: IncomingMessage, onChunk: (chunk: ChatChunk) => void): Promise<void> {
  body.setEncoding("utf8");
  let text = "";
  for await (const piece of body) text += piece as string;
  const answer = JSON.parse(text) as OpenAIType.ChatCompletion & { error?: { message?: unknown } };
  if (answer.error) throw new LlmError("E_LLM_STREAM", `the LLM provider failed mid-answer: ${String(answer.error.message ?? "unknown error")}`, { retryable: true });
  const choice = answer.choices?.[0];
  const message = choice?.message;
  onChunk({
    id: answer.id,
    object: "chat.completion.chunk",
    created: answer.created,
    model: answer.model,
    choices: [
      {
        index: 0,
        finish_reason: choice?.finish_reason ?? null,
        delta: {
          ...(message?.content ? { content: message.content } : {}),
          ...(message?.tool_calls ? { tool_calls: message.tool_calls.map((t, index) => ({ index, ...t })) } : {}),
        },
      },
    ],
    ...(answer.usage ? { usage: answer.usage } : {}),
  } as ChatChunk);
}
