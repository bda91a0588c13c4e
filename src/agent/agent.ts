import type { Logger } from "pino";
import { LlmError, StorageError, ZeptoError } from "../errors.js";
import type { InboundMessage } from "../messages.js";
import type { SessionStore } from "../storage/session-store.js";
import { HELP_TEXT, parseCommand } from "./commands.js";
import type { LlmClient } from "./llm-types.js";
import type { ReplySink } from "./reply-sink.js";
import type { Tool } from "./tools.js";
import { estimateTokens, type UsageMeter } from "./usage.js";

/** What the agent needs; all of it is passed in. */
export interface AgentOptions {
  llm: LlmClient;
  sessions: SessionStore;
  reply: ReplySink;
  systemPrompt: string;
  tools: Tool[];
  usage: UsageMeter;
  logger: Logger;
  /** Text telling the operator what to configure when no LLM is set up. */
  unconfiguredText: string;
  /** Called after each LLM answer with its timing, for metrics and the benchmark. */
  onLlmDone?: (m: InboundMessage, llmMs: number) => void;
  /** Called after each LLM call, answered or failed for good, for metrics. */
  onLlmCall?: (m: InboundMessage, r: { ms: number; tokens?: { prompt: number; completion: number }; error?: string }) => void;
}

const MAX_TOOL_ROUNDS = 4;

/** The user's daily token allowance is spent. */
class BudgetSpentError extends ZeptoError {
  constructor(budget: number) {
    super("E_BUDGET", `You have used today's allowance of ${budget} tokens. It resets at 00:00 UTC; /usage shows where you stand.`);
  }
}

/**
 * The agent: for each message, loads the user's session, asks the LLM (running tool calls
 * it makes), saves the pruned session and replies. Every failure ends in an error reply.
 */
export class Agent {
  private readonly toolSpecs;
  private readonly toolsByName: Map<string, Tool>;

  constructor(private readonly o: AgentOptions) {
    this.toolSpecs = o.tools.map((t) => t.spec);
    this.toolsByName = new Map(o.tools.map((t) => [t.spec.function.name, t]));
  }

  /** Handles one message end to end; never throws for a message-level failure. */
  async handle(m: InboundMessage, signal: AbortSignal): Promise<void> {
    const command = parseCommand(m.text);
    if (command === "reset") {
      this.o.sessions.reset(m.userId);
      await this.o.reply.final(m, "Done: I forgot our conversation. Let's start fresh.", false);
      return;
    }
    if (command === "help" || command === "start") {
      await this.o.reply.final(m, HELP_TEXT, false);
      return;
    }
    if (command === "usage") {
      const budget = this.o.usage.dailyBudget;
      // Without a budget nothing is counted (a write per message for a figure no one enforces):
      // say so, rather than "0 tokens".
      await this.o.reply.final(
        m,
        budget > 0
          ? `Today you used ${await this.o.usage.used(m.userId)} of your ${budget} tokens (resets at 00:00 UTC).`
          : "There is no daily limit here, so tokens are not counted.",
        false,
      );
      return;
    }
    if (!this.o.llm.configured) {
      await this.o.reply.final(m, this.o.unconfiguredText, true);
      return;
    }
    let text: string;
    try {
      text = await this.answer(m, signal);
    } catch (err) {
      if (signal.aborted) throw err;
      const log = this.o.logger.child({ msgId: m.id });
      if (err instanceof BudgetSpentError) {
        log.info({ userId: m.userId }, "daily token budget spent");
        await this.o.reply.final(m, err.message, true);
      } else if (err instanceof LlmError) {
        this.o.onLlmCall?.(m, { ms: 0, error: err.code });
        log.error({ err, code: err.code }, "LLM failed after retries; sending an error reply");
        await this.o.reply.final(m, `Sorry, I could not get an answer: ${err.message}. Please try again in a minute.`, true);
      } else if (err instanceof StorageError) {
        log.error({ err }, "session store failed; sending an error reply");
        await this.o.reply.final(m, "Sorry, my memory store is failing right now. Please try again in a minute.", true);
      } else {
        log.error({ err }, "message failed; sending an error reply");
        await this.o.reply.final(m, "Sorry, something went wrong on my side. Please try again.", true);
      }
      return;
    }
    await this.o.reply.final(m, text, false);
  }

  private async answer(m: InboundMessage, signal: AbortSignal): Promise<string> {
    // The store hands out a fresh array on every load, so this turn is appended to it in
    // place rather than copying the whole history for the LLM call and again for the save.
    const messages = await this.o.sessions.load(m.userId);
    messages.push({ role: "user", content: m.text });
    for (let round = 0; ; round++) {
      if (!(await this.o.usage.allowed(m.userId))) {
        throw new BudgetSpentError(this.o.usage.dailyBudget);
      }
      const res = await this.o.llm.complete({
        system: this.o.systemPrompt,
        messages,
        tools: round < MAX_TOOL_ROUNDS ? this.toolSpecs : [],
        signal,
        msgId: m.id,
        onDelta: (d) => this.o.reply.delta(m, d),
        onRestart: () => this.o.reply.restart(m),
        // A failed attempt (a timeout mid-answer, a broken stream) may be billed as well: it
        // counts, or asking for long answers a slow model never finishes would cost nothing.
        ...(this.o.usage.dailyBudget > 0
          ? {
              onAttemptFailed: (chars: number) => {
                this.o.usage.add(m.userId, estimateTokens(JSON.stringify(messages).length + chars)).catch((err: unknown) => {
                  this.o.logger.warn({ err, msgId: m.id }, "could not count a failed attempt's tokens");
                });
              },
            }
          : {}),
      });
      this.o.onLlmDone?.(m, res.llmMs);
      if (this.o.usage.dailyBudget > 0) {
        const spent = res.usage
          ? res.usage.promptTokens + res.usage.completionTokens
          : estimateTokens(JSON.stringify(messages).length + res.text.length);
        await this.o.usage.add(m.userId, spent);
      }
      this.o.onLlmCall?.(m, {
        ms: res.llmMs,
        ...(res.usage ? { tokens: { prompt: res.usage.promptTokens, completion: res.usage.completionTokens } } : {}),
      });
      if (res.toolCalls.length === 0 || round >= MAX_TOOL_ROUNDS) {
        const text = res.text.trim() || "(the model returned an empty answer)";
        messages.push({ role: "assistant", content: text });
        this.o.sessions.save(m.userId, messages);
        return text;
      }
      messages.push({ role: "assistant", content: res.text || null, tool_calls: res.toolCalls });
      for (const call of res.toolCalls) {
        messages.push({ role: "tool", tool_call_id: call.id, content: await this.runTool(call.function.name, call.function.arguments) });
      }
    }
  }

  private async runTool(name: string, rawArgs: string): Promise<string> {
    const tool = this.toolsByName.get(name);
    if (!tool) return JSON.stringify({ error: `unknown tool ${name}` });
    let args: Record<string, unknown> = {};
    try {
      const parsed: unknown = rawArgs ? JSON.parse(rawArgs) : {};
      if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) args = parsed as Record<string, unknown>;
    } catch {
      return JSON.stringify({ error: "arguments were not valid JSON" });
    }
    try {
      return await tool.run(args);
    } catch (err) {
      return JSON.stringify({ error: (err as Error).message });
    }
  }
}
