import type { ChatMessage, Session } from "./session-store.js";

type ToolCalls = NonNullable<ChatMessage["tool_calls"]>;

/** The rare fields of a message (tool calls and results), kept beside the text, not in it. */
interface Extra {
  tool_calls?: ToolCalls;
  tool_call_id?: string;
}

// One character per message: its role, and for an assistant whether its content is null.
const USER = "u";
const ASSISTANT = "a";
const ASSISTANT_NULL = "n";
const TOOL = "t";

/**
 * A session's history as held in memory between messages: an array of the content strings,
 * one character per message for its role, and the rare tool-call fields on the side. It
 * replaces one `{ role, content }` object per message (40 bytes each on 64-bit V8, more than
 * a short chat turn's text) and the slack of arrays grown by push.
 *
 * Unlike holding the JSON text, reading it back costs no parsing: `messages()` builds short-
 * lived objects around the very same strings, which the young generation collects cheaply.
 * On disk a session stays `{ messages: ChatMessage[] }` (`toJSON`).
 */
export class CompactHistory {
  private constructor(
    private readonly contents: readonly string[],
    /**
     * One character per message; absent for the common history that alternates question
     * and answer from a question, every content a string, which then costs nothing more.
     */
    private readonly roles: string | undefined,
    /** Tool calls and tool-call ids by message index; absent when the history has none. */
    private readonly extras: readonly (Extra | undefined)[] | undefined,
  ) {}

  /** Packs `messages` from index `start` on; the input is neither kept nor changed. */
  static from(messages: readonly ChatMessage[], start = 0): CompactHistory {
    const n = Math.max(0, messages.length - start);
    const contents = new Array<string>(n);
    let alternating = true;
    for (let i = 0; i < n; i++) {
      const m = messages[start + i] as ChatMessage;
      contents[i] = m.content ?? "";
      if (alternating && (m.role !== (i % 2 === 0 ? "user" : "assistant") || m.content === null || m.tool_calls !== undefined || m.tool_call_id !== undefined)) {
        alternating = false;
      }
    }
    if (alternating) return new CompactHistory(contents, undefined, undefined);
    // Joined once, not appended to: `+=` would build a chain of cons strings, one per message.
    const roles = new Array<string>(n);
    let extras: (Extra | undefined)[] | undefined;
    for (let i = 0; i < n; i++) {
      const m = messages[start + i] as ChatMessage;
      roles[i] = m.role === "user" ? USER : m.role === "tool" ? TOOL : m.content === null ? ASSISTANT_NULL : ASSISTANT;
      if (m.tool_calls !== undefined || m.tool_call_id !== undefined) {
        extras ??= new Array<Extra | undefined>(n).fill(undefined);
        const extra: Extra = {};
        if (m.tool_calls !== undefined) extra.tool_calls = m.tool_calls;
        if (m.tool_call_id !== undefined) extra.tool_call_id = m.tool_call_id;
        extras[i] = extra;
      }
    }
    return new CompactHistory(contents, roles.join(""), extras);
  }

  /** Number of messages held. */
  get length(): number {
    return this.contents.length;
  }

  /** The history as chat messages, oldest first: new objects on every call, free to change. */
  messages(): ChatMessage[] {
    const n = this.contents.length;
    const out = new Array<ChatMessage>(n);
    const roles = this.roles;
    if (roles === undefined) {
      for (let i = 0; i < n; i++) out[i] = { role: i % 2 === 0 ? "user" : "assistant", content: this.contents[i] as string };
      return out;
    }
    for (let i = 0; i < n; i++) {
      const code = roles[i];
      const m: ChatMessage =
        code === USER
          ? { role: "user", content: this.contents[i] as string }
          : code === ASSISTANT
            ? { role: "assistant", content: this.contents[i] as string }
            : code === TOOL
              ? { role: "tool", content: this.contents[i] as string }
              : { role: "assistant", content: null };
      const extra = this.extras?.[i];
      if (extra?.tool_calls !== undefined) m.tool_calls = extra.tool_calls;
      if (extra?.tool_call_id !== undefined) m.tool_call_id = extra.tool_call_id;
      out[i] = m;
    }
    return out;
  }

  /** The on-disk shape, unchanged from when sessions were held as plain objects. */
  toJSON(): Session {
    return { messages: this.messages() };
  }
}
