/** Who sent an update, as far as access control cares. */
export interface TelegramSender {
  id: number;
  username?: string;
}

/**
 * Builds the `allow_from` / `deny_by_default` check: a non-empty `allow_from` admits only the
 * listed user ids and @usernames; an empty one admits everyone unless `deny_by_default` is set.
 */
export function createAccessCheck(allowFrom: readonly (string | number)[], denyByDefault: boolean): (from: TelegramSender) => boolean {
  const ids = new Set<number>();
  const names = new Set<string>();
  for (const entry of allowFrom) {
    const text = String(entry).trim();
    if (/^-?\d+$/.test(text)) ids.add(Number(text));
    else if (text !== "") names.add(text.replace(/^@/, "").toLowerCase());
  }
  if (ids.size === 0 && names.size === 0) return () => !denyByDefault;
  return (from) => ids.has(from.id) || (from.username !== undefined && names.has(from.username.toLowerCase()));
}
