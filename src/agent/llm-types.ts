import type { ChatMessage } from "../storage/session-store.js";

/** A tool the LLM may call, in the chat-completions `tools` shape. */
export interface ToolSpec {
  type: "function";
  function: { name: string; description: string; parameters: Record<string, unknown> };
}

/** One request to the LLM. */
export interface LlmRequest {
  system: string;
  messages: ChatMessage[];
  tools?: ToolSpec[];
  signal: AbortSignal;
  /** Called with each piece of streamed text. */
  onDelta?: (text: string) => void;
  /** Called when a broken stream is retried from the start: discard what was streamed. */
  onRestart?: () => void;
  /**
   * Called when an attempt fails after the provider worked on it (our timeout cut it off, or
   * its stream broke mid-answer), with the characters it streamed: it may be billed all the same.
   */
  onAttemptFailed?: (streamedChars: number) => void;
  /** Message id for log lines. */
  msgId: string;
}

/** What the LLM answered. */
export interface LlmResponse {
  text: string;
  toolCalls: NonNullable<ChatMessage["tool_calls"]>;
  usage?: { promptTokens: number; completionTokens: number };
  /** Time spent waiting on the provider, for the overhead figure of the benchmark. */
  llmMs: number;
}

/** Talks to the LLM; `configured` is false when no endpoint or key is set. */
export interface LlmClient {
  readonly configured: boolean;
  complete(req: LlmRequest): Promise<LlmResponse>;
  /** Loads what the first call needs, after the gateway is ready. */
  warm?(): void;
}
