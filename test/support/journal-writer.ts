import { pino } from "pino";
import { MessageJournal } from "../../src/storage/journal.js";
import { openSyncSqlite } from "../../src/storage/sync-sqlite.js";
import { webchatMessage } from "./harness.js";

/**
 * A child process for the journal's crash test: journals messages on the file given as its
 * argument, with the low mark moved on every commit, until it is killed. Each message is
 * answered five messages later, except every seventh, which stays unfinished for good. It
 * prints `A <id>` once an acceptance is committed and `D <id>` once a delivery is (stdout is
 * a pipe: written synchronously on Linux, so a printed line was committed before any kill).
 */
async function main(): Promise<void> {
  const path = process.argv[2] as string;
  const start = Number(process.argv[3] ?? 0);
  const db = openSyncSqlite(`sqlite://${path}`);
  const journal = MessageJournal.open(db.db, pino({ level: "silent" }), { markEveryMs: 0 });
  const id = (n: number): string => `webchat:m${n}`;
  for (let n = start; n < start + 1_000_000; n++) {
    await journal.accept(webchatMessage(id(n), `text ${n}`));
    process.stdout.write(`A ${id(n)}\n`);
    const answered = n - 5;
    if (answered >= start && answered % 7 !== 3) {
      await journal.finish(id(answered), `answer ${answered}`, false, true);
      process.stdout.write(`D ${id(answered)}\n`);
    }
  }
}

await main();
