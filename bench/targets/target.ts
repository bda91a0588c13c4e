/** A reply as the load generator saw it arrive. */
export interface DeliveredReply {
  user: number;
  /** The id of the message it answers. */
  id: string;
  /** `performance.now()` when it arrived. */
  at: number;
  isError: boolean;
}

/** A gateway under load, reached the way one channel reaches it. */
export interface BenchTarget {
  /** Sends one message for `user`; resolves with its id once the gateway accepted it, rejects if refused. */
  send(user: number, text: string): Promise<string>;
  /** Set by the runner before the first send: called for every reply that arrives. */
  onReply: (r: DeliveredReply) => void;
  /** Time the LLM took for message `id` (consumed), or the configured fake latency when not observable. */
  llmMs(id: string): number;
  /** Resident memory of the gateway process, bytes. */
  rssBytes(): number;
  /** CPU seconds used so far by the gateway process. */
  cpuSeconds(): number;
  /**
   * Set when the gateway runs in a child process: what this process runs besides the load
   * generator ("load generator + fake LLM"). The runner then reads this process's CPU over
   * the same window as the gateway's and reports it under that name.
   */
  readonly loadProcess?: string;
  /** Lets the gateway settle (GC when it can, store flush) before a memory reading. */
  settle(): Promise<void>;
  /** Extra figures for the report (hot sessions, fake LLM requests...). */
  details(): Record<string, unknown>;
  close(): Promise<void>;
}

/** The settings every target is built from. */
export interface TargetSettings {
  users: number;
  llmLatencyMs: number;
  /** Bus buffer: large enough that the bench's own users are never refused. */
  busBufferSize: number;
  dir: string;
  /** Extra node flags for a gateway child process (profiling, GC flags). */
  gatewayNodeArgs?: string[];
  /** A file the gateway child's output is appended to. */
  gatewayLog?: string | undefined;
  /** Web chat: run the bare stand-in (bench/bare-gateway.ts) instead of the gateway. */
  bareGateway?: boolean;
  /** Least time `settle` keeps collecting before a memory reading (inproc). */
  settleMinMs?: number;
}
