import type { Readable } from "node:stream";
import type OpenAIType from "openai";
import pLimit from "p-limit";
import type { Logger } from "pino";
import type { RateLimiterQueue } from "rate-limiter-flexible";
import { LlmError } from "../errors.js";
import type { ChatMessage } from "../storage/session-store.js";
import type { LlmClient, LlmRequest, LlmResponse } from "./llm-types.js";
import { CircuitBreaker } from "./circuit-breaker.js";
import { readChatStream } from "./chat-stream.js";
import { createHttpFetch } from "../http/http-fetch.js";
import { withCachedRequestHeaders } from "./sdk-request-cache.js";
import { backoffDelay, parseRetryAfter, sleep } from "./retry.js";

/** Most tool calls one answer may make; an index past it is not a call's. */
const MAX_TOOL_CALLS = 128;

/**
 * Which call a streamed tool-call delta belongs to. OpenAI numbers them with `index`; Gemini's
 * compatible endpoint and some proxies leave it out, and then a delta with a new id starts a
 * call and one without an id continues the last.
 */
function toolCallSlot(calls: readonly { id: string }[], tc: { index?: number; id?: string }): number {
  const { index } = tc;
  if (typeof index === "number" && Number.isInteger(index) && index >= 0 && index < MAX_TOOL_CALLS) return index;
  const last = calls.length - 1;
  if (last < 0) return 0;
  return tc.id && calls[last]?.id && tc.id !== calls[last].id ? calls.length : last;
}

/** Settings of the OpenAI-compatible client, from `[llm]`. */
export interface OpenAiClientOptions {
  baseUrl: string;
  apiKey: string;
  model: string;
  maxConcurrency: number;
  requestsPerMinute: number;
  timeoutMs: number;
  maxRetries: number;
  maxTokens?: number | undefined;
  temperature?: number | undefined;
  /** False when neither a key nor a non-default endpoint is set. */
  configured: boolean;
  logger: Logger;
  backoff?: { baseMs: number; capMs: number };
  /** Called before each retry, for metrics. */
  onRetry?: (code: string) => void;
  /** The circuit breaker: failed attempts within its window that open it (default 5, if half the attempts there), and its cooldown. */
  breaker?: { threshold: number; cooldownMs: number };
}

type OpenAIModule = typeof OpenAIType;

/**
 * Whether a failed attempt counts against the provider in the circuit breaker: no
 * connection, a timeout, a 5xx, a broken or malformed answer. A 429 says the provider is
 * up and busy (the retries wait as it asks), and any other 4xx is about this request or
 * our key: neither means the provider is down, and neither should refuse every user.
 */
function providerDown(err: LlmError): boolean {
  return err.status === undefined || err.status === 408 || err.status >= 500;
}

function toLlmError(OpenAI: OpenAIModule, err: unknown, timedOut: boolean): LlmError {
  if (err instanceof LlmError) return err;
  if (timedOut || err instanceof OpenAI.APIConnectionTimeoutError) {
    return new LlmError("E_LLM_TIMEOUT", "the LLM did not answer in time", { retryable: true, cause: err });
  }
  if (err instanceof OpenAI.APIError && err.status !== undefined) {
    const status = err.status;
    const retryAfterMs = parseRetryAfter(err.headers);
    const retryable = status === 408 || status === 409 || status === 429 || status >= 500;
    const what =
      status === 401 || status === 403
        ? "the LLM provider rejected the API key"
        : status === 404
          ? "the LLM provider does not know this model or URL"
          : status === 429
            ? "the LLM provider is rate limiting us"
            : status >= 500
              ? "the LLM provider had an internal error"
              : "the LLM provider refused the request";
    return new LlmError(`E_LLM_${status}`, `${what} (HTTP ${status})`, {
      retryable,
      status,
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
      cause: err,
    });
  }
  if (err instanceof OpenAI.APIConnectionError || err instanceof TypeError) {
    return new LlmError("E_LLM_CONNECTION", "cannot reach the LLM provider", { retryable: true, cause: err });
  }
  if (err instanceof SyntaxError) {
    return new LlmError("E_LLM_MALFORMED", "the LLM provider sent a malformed answer", { retryable: true, cause: err });
  }
  return new LlmError("E_LLM", `the LLM call failed: ${(err as Error)?.message ?? String(err)}`, { retryable: true, cause: err });
}

/**
 * The LLM client on the official `openai` SDK, so any OpenAI-compatible server works
 * (OpenAI, OpenRouter, Ollama, vLLM, Groq). Calls are bounded by a concurrency limit and a
 * requests-per-minute limiter, streamed, and retried on 429, 5xx, timeouts and broken streams
 * with exponential backoff and jitter, honouring Retry-After. The SDK's own retries are off
 * so that one loop owns the policy. The SDK's requests go through our node:http `fetch`
 * (keep-alive pool of `maxConcurrency` sockets), which costs about half the CPU per call of
 * Node's built-in one (`node dist/bench/sdk-cost.js`).
 */
export function createOpenAiClient(o: OpenAiClientOptions): LlmClient {
  // The SDK is loaded on first use (or by warm()), not at start: it is the largest module
  // and the gateway should be ready before it is needed.
  let loaded: Promise<{ OpenAI: OpenAIModule; sdk: OpenAIType }> | undefined;
  const load = () =>
    (loaded ??= Promise.all([import("openai"), o.requestsPerMinute > 0 ? import("rate-limiter-flexible") : undefined]).then(([{ default: OpenAI }, rl]) => {
      if (rl) rpm = new rl.RateLimiterQueue(new rl.RateLimiterMemory({ points: o.requestsPerMinute, duration: 60 }), { maxQueueSize: 100_000 });
      // The SDK builds each request's headers with the global Headers, whose first use loads
      // undici (~30 ms of module loading): here, not under the first burst of messages.
      if (typeof Headers !== "function") throw new Error("this Node.js has no global Headers, which the openai SDK needs (Node >= 20.19)");
      return {
      OpenAI,
      sdk: new (withCachedRequestHeaders(OpenAI))({
        baseURL: o.baseUrl,
        // The SDK insists on a key; local servers (Ollama, vLLM) ignore it.
        apiKey: o.apiKey || "not-needed",
        maxRetries: 0,
        timeout: o.timeoutMs,
        fetch: createHttpFetch(o.maxConcurrency).fetch as unknown as typeof fetch,
      }),
      };
    }));
  const limit = pLimit(o.maxConcurrency);
  let rpm: RateLimiterQueue | undefined;
  const backoff = o.backoff ?? { baseMs: 500, capMs: 20_000 };
  const breaker = new CircuitBreaker(o.breaker ?? { threshold: 5, cooldownMs: 30_000 });

  async function attempt(req: LlmRequest): Promise<LlmResponse> {
    const { OpenAI, sdk } = await load();
    if (rpm) await rpm.removeTokens(1);
    // One controller per attempt, released when it ends. AbortSignal.timeout() would keep
    // each attempt (and the SDK's listeners, holding its request and response) alive for the
    // whole timeout, and AbortSignal.any() ties them to the bus's long-lived signal: at 500
    // msg/s that grew the heap by ~4 MB/s in the soak test.
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort(new Error("LLM attempt timed out"));
    }, o.timeoutMs);
    const onAbort = (): void => controller.abort(req.signal.reason);
    // A signal that aborted already never fires: a call started during shutdown stops here.
    if (req.signal.aborted) onAbort();
    else req.signal.addEventListener("abort", onAbort, { once: true });
    const signal = controller.signal;
    const started = performance.now();
    let streamed = false;
    let streamedChars = 0;
    try {
      const response = await sdk.chat.completions
        .create(
          {
            model: o.model,
            messages: [{ role: "system", content: req.system }, ...(req.messages as OpenAIType.ChatCompletionMessageParam[])],
            stream: true,
            // Token usage for the daily budget; servers that do not know it ignore it.
            stream_options: { include_usage: true },
            ...(req.tools && req.tools.length > 0 ? { tools: req.tools } : {}),
            ...(o.maxTokens !== undefined ? { max_tokens: o.maxTokens } : {}),
            ...(o.temperature !== undefined ? { temperature: o.temperature } : {}),
          },
          { signal },
        )
        // The SDK sends the request and turns error statuses into APIErrors; the body is read
        // by readChatStream, which costs a fraction of the SDK's stream reader.
        .asResponse();
      let text = "";
      const calls: { id: string; name: string; args: string }[] = [];
      let usage: LlmResponse["usage"];
      await readChatStream((response as unknown as { body: Readable }).body, (chunk) => {
        const choice = chunk.choices?.[0];
        const delta = choice?.delta;
        if (delta?.content) {
          text += delta.content;
          streamedChars += delta.content.length;
          streamed = true;
          req.onDelta?.(delta.content);
        }
        for (const tc of delta?.tool_calls ?? []) {
          const slot = (calls[toolCallSlot(calls, tc)] ??= { id: "", name: "", args: "" });
          if (tc.id) slot.id = tc.id;
          if (tc.function?.name) slot.name += tc.function.name;
          if (tc.function?.arguments) slot.args += tc.function.arguments;
        }
        if (chunk.usage) usage = { promptTokens: chunk.usage.prompt_tokens, completionTokens: chunk.usage.completion_tokens };
      });
      // Belt and braces: an abort or timeout must never pass for a complete, truncated answer.
      if (signal.aborted) throw signal.reason;
      const toolCalls: NonNullable<ChatMessage["tool_calls"]> = calls
        .filter((c) => c && c.name)
        .map((c, i) => ({ id: c.id || `call_${i}`, type: "function", function: { name: c.name, arguments: c.args } }));
      return { text, toolCalls, llmMs: performance.now() - started, ...(usage ? { usage } : {}) };
    } catch (err) {
      if (req.signal.aborted) throw req.signal.reason;
      const e = toLlmError(OpenAI, err, timedOut);
      if (streamed) req.onRestart?.();
      // Billed when it ran on the provider: cut off by our timeout, or broken mid-answer.
      if (streamed || timedOut) req.onAttemptFailed?.(streamedChars);
      throw e;
    } finally {
      clearTimeout(timer);
      req.signal.removeEventListener("abort", onAbort);
    }
  }

  return {
    configured: o.configured,
    warm() {
      void load().catch(() => undefined);
    },
    async complete(req) {
      for (let i = 0; ; i++) {
        const wait = breaker.waitMs();
        if (wait > 0) {
          throw new LlmError("E_LLM_DOWN", `the LLM provider is down; I will try it again in ${Math.ceil(wait / 1000)} s`, {
            retryable: false,
          });
        }
        try {
          const res = await limit(() => attempt(req));
          breaker.success();
          return res;
        } catch (err) {
          if (err instanceof LlmError) {
            if (providerDown(err)) breaker.failure();
            else breaker.success();
          }
          if (!(err instanceof LlmError) || !err.retryable || i >= o.maxRetries) throw err;
          const wait = backoffDelay(i, backoff, err.retryAfterMs);
          o.logger.warn({ msgId: req.msgId, code: err.code, attempt: i + 1, waitMs: wait }, "LLM call failed; retrying");
          o.onRetry?.(err.code);
          await sleep(wait, req.signal);
        }
      }
    },
  };
}
