import { CompactHistory } from "./compact-history.js";
import type { WriteBehindMap } from "./write-behind.js";

/** One turn of a conversation, in the shape the chat-completions API takes. */
export interface ChatMessage {
  role: "user" | "assistant" | "tool";
  content: string | null;
  tool_calls?: { id: string; type: "function"; function: { name: string; arguments: string } }[];
  tool_call_id?: string;
}

/** A user's persisted conversation, as it is stored on disk. */
export interface Session {
  messages: ChatMessage[];
}

/**
 * Keeps the newest `max` messages, then drops what would start the history mid-exchange
 * (a tool result or a reply without its question), so the LLM never sees an orphan. An
 * exchange longer than `max` on its own (a question, many tool calls, the answer) is kept
 * whole: cutting it would leave nothing, not even the question just answered.
 */
export function pruneHistory(messages: ChatMessage[], max: number): ChatMessage[] {
  const start = pruneStart(messages, max);
  return start === 0 ? messages : messages.slice(start);
}

/** Where `pruneHistory` would cut: the index of the first message kept. */
function pruneStart(messages: readonly ChatMessage[], max: number): number {
  const cut = Math.max(0, messages.length - max);
  for (let i = cut; i < messages.length; i++) if (messages[i]?.role === "user") return i;
  for (let i = cut - 1; i >= 0; i--) if (messages[i]?.role === "user") return i;
  return messages.length;
}

/** Turns a session read from disk into its in-memory form (the `revive` of the sessions' map). */
export function reviveSession(stored: unknown): CompactHistory {
  const messages = (stored as Partial<Session> | null)?.messages;
  return CompactHistory.from(Array.isArray(messages) ? messages : []);
}

/**
 * Sessions keyed by their owner's id (`"<channel>:<user>"`), pruned on every save. Held
 * compactly in memory (`CompactHistory`): a hot session is a conversing user's main cost.
 */
export class SessionStore {
  constructor(
    private readonly map: WriteBehindMap<CompactHistory>,
    private readonly maxMessages: number,
  ) {}

  /**
   * The user's history, oldest first; empty for a new or expired session. A new array of new
   * objects on every call: the caller may append to it and save it. Throws `StorageError`.
   */
  async load(userId: string): Promise<ChatMessage[]> {
    const session = await this.map.get(userId);
    return session ? session.messages() : [];
  }

  /** Saves the history, pruned to `max_session_messages`; committed with the next batch. */
  save(userId: string, messages: ChatMessage[]): void {
    this.map.set(userId, CompactHistory.from(messages, pruneStart(messages, this.maxMessages)));
  }

  /** Forgets the user's session. */
  reset(userId: string): void {
    this.map.delete(userId);
  }

  /** Sessions held in memory. */
  get hot(): number {
    return this.map.size;
  }
}
