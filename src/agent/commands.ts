/** Chat commands the agent answers itself, without the LLM. */
export type Command = "reset" | "help" | "start" | "usage";

/** Recognizes `/reset`, `/help` and `/start`, also in Telegram's `/reset@botname` form. */
export function parseCommand(text: string): Command | undefined {
  const match = /^\/([a-z]+)(?:@\w+)?\s*$/i.exec(text.trim());
  const name = match?.[1]?.toLowerCase();
  return name === "reset" || name === "help" || name === "start" || name === "usage" ? name : undefined;
}

/** The text of `/help`. */
export const HELP_TEXT = [
  "I am your assistant. Write to me in plain words.",
  "",
  "Commands:",
  "/reset - forget our conversation and start fresh",
  "/usage - tokens you used today, and your daily allowance",
  "/help - show this help",
].join("\n");
