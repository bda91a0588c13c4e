import type { Logger } from "pino";
import { LlmError } from "../errors.js";
import type { LlmClient } from "./llm-types.js";

/** An LLM client that turns to `fallback` when `primary` fails for good (or its circuit is open). */
export function withFallback(primary: LlmClient, fallback: LlmClient, logger: Logger): LlmClient {
  return {
    configured: primary.configured || fallback.configured,
    warm() {
      primary.warm?.();
      fallback.warm?.();
    },
    async complete(req) {
      try {
        return await primary.complete(req);
      } catch (err) {
        if (!(err instanceof LlmError) || req.signal.aborted) throw err;
        logger.warn({ msgId: req.msgId, code: err.code }, "primary LLM failed; using the fallback");
        return fallback.complete(req);
      }
    },
  };
}
