import { constants } from "node:os";

/**
 * What a run leaves behind if it is stopped by a signal: gateway children and temporary
 * folders. Node's default for SIGINT and SIGTERM ends the process at once, running no
 * `finally`, so a `kill` or a CI timeout would leave a gateway child serving on with its
 * SQLite files in /tmp. Each holder registers a synchronous cleanup while it lives.
 */
const cleanups = new Set<() => void>();

/** Registers a cleanup to run if the process is stopped by a signal; returns its removal. */
export function onInterrupt(cleanup: () => void): () => void {
  cleanups.add(cleanup);
  return () => cleanups.delete(cleanup);
}

const SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

/**
 * Makes SIGINT, SIGTERM and SIGHUP run the registered cleanups, then exit with 128 + the
 * signal's number, as a shell reports a process killed by it; returns the handlers' removal,
 * for when the command is done. For the `zeptoclaw bench` command only: a library caller
 * keeps its own signal handling.
 */
export function exitCleanlyOnSignals(): () => void {
  const handlers = SIGNALS.map((signal) => {
    const handler = (): void => {
      // Newest first: a gateway child is stopped before the folder it writes into is removed.
      for (const cleanup of [...cleanups].reverse()) {
        try {
          cleanup();
        } catch {
          // One failed cleanup must not keep the others from running.
        }
      }
      cleanups.clear();
      const bar = process.stderr.isTTY ? "\r\x1b[2K" : "";
      process.stderr.write(`${bar}zeptoclaw bench: stopped by ${signal}; gateway children stopped and temporary files removed\n`);
      process.exit(128 + constants.signals[signal]);
    };
    process.once(signal, handler);
    return [signal, handler] as const;
  });
  return () => {
    for (const [signal, handler] of handlers) process.off(signal, handler);
  };
}
