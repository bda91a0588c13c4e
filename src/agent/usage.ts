import type { WriteBehindMap } from "../storage/write-behind.js";

/** The UTC day a usage counter belongs to, e.g. `2026-11-28`. */
function day(now: number): string {
  return new Date(now).toISOString().slice(0, 10);
}

/** Tokens a text costs when the provider does not report usage: about four characters each. */
export function estimateTokens(chars: number): number {
  return Math.ceil(chars / 4);
}

/** Per-user daily token counters, checked before each LLM call (`[limits] daily_tokens_per_user`). */
export class UsageMeter {
  constructor(
    private readonly counters: WriteBehindMap<number>,
    /** Tokens per user per UTC day; 0 means no limit. */
    readonly dailyBudget: number,
  ) {}

  /** Tokens the user spent today. */
  async used(userId: string, now = Date.now()): Promise<number> {
    return (await this.counters.get(`${userId}:${day(now)}`)) ?? 0;
  }

  /** True when the user may make another LLM call today. */
  async allowed(userId: string, now = Date.now()): Promise<boolean> {
    return this.dailyBudget === 0 || (await this.used(userId, now)) < this.dailyBudget;
  }

  /** Adds spent tokens to today's counter. */
  async add(userId: string, tokens: number, now = Date.now()): Promise<void> {
    const key = `${userId}:${day(now)}`;
    this.counters.set(key, ((await this.counters.get(key)) ?? 0) + tokens);
  }
}
