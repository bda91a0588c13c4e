import type { Readable } from "node:stream";
import type OpenAIType from "openai";
import { LlmError } from "../errors.js";

export type ChatChunk = OpenAIType.ChatCompletionChunk;

const broken = (what: string): LlmError => new LlmError("E_LLM_STREAM", `the LLM provider's answer ${what}`, { retryable: true });

/** A non-streamed completion as the one chunk a stream would have ended with. */
function asChunk(answer: OpenAIType.ChatCompletion): ChatChunk {
  const choice = answer.choices?.[0];
  const message = choice?.message;
  return {
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
  } as ChatChunk;
}

/** The LlmError for an `error` the provider put in its answer, or undefined. */
function providerError(event: string, parsed: { error?: unknown; message?: unknown } | null): LlmError | undefined {
  if (event !== "error" && !(parsed && parsed.error)) return undefined;
  const detail = parsed?.error ?? parsed?.message;
  const message = typeof detail === "object" && detail !== null && "message" in detail ? String((detail as { message: unknown }).message) : String(detail);
  return new LlmError("E_LLM_STREAM", `the LLM provider failed mid-answer: ${message}`, { retryable: true });
}

/**
 * Reads a streamed chat completion (server-sent events) from the response body our `fetch`
 * hands the SDK, calling `onChunk` for each JSON chunk, and resolves at the end of the body.
 *
 * The SDK's own reader runs every chunk through three nested async generators and copies
 * bytes twice on the way; on a short answer that was a tenth of the gateway's CPU per
 * message. This one parses the lines of each `data` event as it arrives. It follows the SSE
 * rules the SDK follows: a leading byte-order mark is skipped, lines end in "\n", "\r\n" or
 * "\r", `data:` lines of one event are joined with "\n", a blank line ends the event, `:`
 * lines are comments, an event cut off by the end of the body is dropped, and `[DONE]` ends
 * the answer.
 *
 * It rejects, so that the call is retried rather than a part taken for the whole: with a
 * retryable LlmError on an error event or a chunk carrying `error` (the provider failed
 * mid-answer), or on a body that ends with neither `[DONE]` nor a `finish_reason` (cut
 * off); with the SyntaxError on a chunk that is not JSON; with the body's error when it
 * breaks or is aborted.
 *
 * Some OpenAI-compatible servers ignore `stream: true` and answer with one JSON completion,
 * whatever their Content-Type says (and some label a stream `application/json`): a body
 * whose first character is `{` is read whole and handed on as a single chunk, instead of
 * passing for an empty reply.
 */
export function readChatStream(body: Readable, onChunk: (chunk: ChatChunk) => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let buf = "";
    let data: string[] = [];
    let event = "";
    /** Unknown until the first character that is not white space: a stream, or one JSON answer. */
    let mode: "?" | "sse" | "json" = "?";
    let done = false;
    let finished = false;
    let settled = false;
    const fail = (err: unknown): void => {
      if (settled) return;
      settled = true;
      body.destroy();
      reject(err);
    };
    const emit = (chunk: ChatChunk): void => {
      if (chunk.choices?.some((c) => c.finish_reason)) finished = true;
      onChunk(chunk);
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
      const err = providerError(name, parsed);
      if (err) throw err;
      emit(parsed);
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
    /** Parses the complete lines in `buf`; a "\r" at its very end waits for the next piece, unless this is the last. */
    const lines = (last: boolean): void => {
      let start = 0;
      // The next "\r" is looked for again only once passed: a body without any (the usual
      // case) is scanned for it once per piece, not once per line.
      let cr = buf.indexOf("\r");
      for (;;) {
        const nl = buf.indexOf("\n", start);
        if (cr >= 0 && cr < start) cr = buf.indexOf("\r", start);
        if (nl < 0 && cr < 0) break;
        let end: number;
        let next: number;
        if (cr >= 0 && (nl < 0 || cr < nl)) {
          if (cr === buf.length - 1 && !last) break;
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
    };
    body.setEncoding("utf8");
    body.on("data", (piece: string) => {
      if (settled) return;
      buf += piece;
      try {
        if (mode === "?") {
          if (buf.charCodeAt(0) === 0xfeff) buf = buf.slice(1);
          const first = buf.trimStart();
          if (first === "") return;
          mode = first.charCodeAt(0) === 123 /* "{" */ ? "json" : "sse";
        }
        if (mode === "sse") lines(false);
      } catch (err) {
        fail(err);
      }
    });
    body.once("end", () => {
      if (settled) return;
      try {
        if (mode === "json") {
          const answer = JSON.parse(buf) as OpenAIType.ChatCompletion & { error?: unknown };
          const err = providerError("", answer);
          if (err) throw err;
          emit(asChunk(answer));
        } else {
          lines(true);
        }
        if (!done && !finished) throw broken("ended before it was complete");
      } catch (err) {
        fail(err);
        return;
      }
      settled = true;
      resolve();
    });
    // `on`, not `once`: a second error after the first must not go unhandled.
    body.on("error", fail);
    body.once("close", () => {
      // A body destroyed without an error (or closed before its end) is a broken stream.
      if (!settled) fail(broken("stream broke off"));
    });
  });
}
