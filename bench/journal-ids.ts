import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { messageId } from "../src/channels/webchat/webchat-channel.js";
import type { InboundMessage } from "../src/messages.js";
import { MessageJournal } from "../src/storage/journal.js";
import { openSyncSqlite } from "../src/storage/sync-sqlite.js";
import { numberFlag } from "./script-args.js";

/**
 * What a journal commit costs with random message ids against the web chat's time-ordered
 * ones, on the real journal (better-sqlite3, WAL): `node dist/bench/journal-ids.js [--rows N]
 * [--messages M] [--per-commit K]`. The journal first holds N delivered rows (it keeps a day
 * of them), then takes M messages, K accepted and the K before them answered in each commit,
 * as under load (K = 5 by default); `--per-commit 0` commits each acceptance and each reply
 * alone, as at 1,000 msg/s. Prints the time and the bytes written to the WAL a message.
 */
async function main(): Promise<void> {
  const rows = numberFlag("--rows", 200_000);
  const messages = numberFlag("--messages", 100_000);
  const perCommit = numberFlag("--per-commit", 5);
  const schemes: [string, () => string][] = [
    ["random (webchat:<uuid>)", () => `webchat:${randomUUID()}`],
    ["time-ordered (messageId)", messageId],
  ];
  const dir = mkdtempSync(join(tmpdir(), "zeptoclaw-journal-ids-"));
  try {
    for (const round of [1, 2]) {
      for (const [name, id] of schemes) {
        const db = openSyncSqlite(join(dir, `${round}-${name.split(" ")[0]}.sqlite`));
        const journal = MessageJournal.open(db.db, pino({ level: "silent" }));
        const message = (): InboundMessage => {
          const conversationId = "webchat:bench-user";
          return { id: id(), channel: "webchat", conversationId, userId: conversationId, sender: { id: "bench-user", isBot: false }, text: "hello there, how are you today?", isDirect: true, mentionsBot: true, attachments: [], receivedAt: Date.now() };
        };
        const fill = db.db.prepare("INSERT INTO journal (id, user_id, conversation_id, state, reply, updated_at) VALUES (?, 'u', 'c', 2, 'an answer', ?)");
        db.db.transaction(() => {
          for (let i = 0; i < rows; i++) fill.run(id(), Date.now());
        })();
        // As under the gateway's checkpointer: no automatic checkpoint inside a commit. Each
        // PASSIVE checkpoint here copies the whole WAL, which then restarts: the frames it
        // reports add up to what was written.
        db.db.pragma("wal_autocheckpoint = 0");
        db.db.pragma("wal_checkpoint(TRUNCATE)");
        const frameBytes = (db.db.pragma("page_size", { simple: true }) as number) + 24;
        let frames = 0;
        const checkpoint = (): void => {
          frames += (db.db.pragma("wal_checkpoint(PASSIVE)") as { log: number }[])[0]?.log ?? 0;
        };
        let answering: InboundMessage[] = [];
        const started = process.hrtime.bigint();
        for (let i = 0; i < messages; i += Math.max(perCommit, 1)) {
          if (perCommit === 0) {
            const m = message();
            await journal.accept(m);
            await journal.finish(m.id, "an answer", false, true);
          } else {
            const batch = Array.from({ length: perCommit }, message);
            await Promise.all([...batch.map((m) => journal.accept(m)), ...answering.map((m) => journal.finish(m.id, "an answer", false, true))]);
            answering = batch;
          }
          if (i % 5_000 === 0) checkpoint();
        }
        const us = Number(process.hrtime.bigint() - started) / 1e3 / messages;
        checkpoint();
        const kb = (frames * frameBytes) / 1024 / messages;
        console.log(`round ${round}  ${name.padEnd(26)} ${rows} rows kept: ${us.toFixed(1)} µs, ${kb.toFixed(1)} KB of WAL a message`);
        db.close();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
