import { join } from "node:path";
import type { Logger } from "pino";
import { Agent } from "./agent/agent.js";
import type { LlmClient } from "./agent/llm-types.js";
import { withFallback } from "./agent/fallback.js";
import { createOpenAiClient } from "./agent/openai-client.js";
import type { ReplySink } from "./agent/reply-sink.js";
import { builtinTools } from "./agent/tools.js";
import { backoffDelay } from "./agent/retry.js";
import { UsageMeter } from "./agent/usage.js";
import { MemoryBus } from "./bus/memory-bus.js";
import type { Channel, ChannelContext } from "./channels/types.js";
import { WebchatChannel } from "./channels/webchat/webchat-channel.js";
import { type Config, OPENAI_DEFAULT_BASE_URL } from "./config/schema.js";
import { FloodLimit } from "./bus/flood-limit.js";
import { BusFullError, ChannelError, RefusedError, StorageError } from "./errors.js";
import { GatewayHttpServer, sendJson } from "./http/http-server.js";
import type { InboundMessage } from "./messages.js";
import { DeferredMetrics } from "./observability/deferred-metrics.js";
import { type GatewayMetrics, noMetrics } from "./observability/metrics-types.js";
import { PACKAGE_ROOT } from "./package-info.js";
import { openStores, type Stores } from "./storage/open-stores.js";

/** What to say when no LLM is configured: exactly what to set. */
export const UNCONFIGURED_LLM_TEXT =
  "No LLM is configured yet. Set OPENAI_API_KEY (for OpenAI), or point llm.base_url (or OPENAI_BASE_URL) " +
  "at a local OpenAI-compatible server such as Ollama (http://127.0.0.1:11434/v1), then restart zeptoclaw.";

/** Options of `startGateway`; `llm` and `channels` replace the configured ones (benchmark, tests). */
export interface GatewayOptions {
  config: Config;
  logger: Logger;
  llm?: LlmClient;
  channels?: Channel[];
  /** Called when a reply is delivered, with the message it answers. */
  onReply?: (m: InboundMessage, isError: boolean) => void;
  onLlmDone?: (m: InboundMessage, llmMs: number) => void;
  /** Where the gateway reports what it does; nothing is recorded without it. */
  metrics?: GatewayMetrics;
  /** First wait before a failed delivery is tried again; doubles up to 5 min. Tests shorten it. */
  redeliveryBaseMs?: number;
}

/** A running gateway. */
export interface Gateway {
  /** The HTTP port actually bound (useful with `http.port = 0`). */
  port: number;
  /** Resolves once /metrics and /dashboard are served (they load just after ready). */
  adminReady: Promise<void>;
  stores: Stores;
  bus: MemoryBus;
  /** Publishes as a channel would: records the message as pending, then hands it to the bus. */
  publish(m: InboundMessage): Promise<void>;
  /** Stops intake, drains within `bus.drain_timeout_ms`, flushes the stores, closes everything. */
  close(): Promise<void>;
}

function llmIsConfigured(config: Config): boolean {
  return config.llm.api_key !== "" || config.llm.base_url !== OPENAI_DEFAULT_BASE_URL;
}

/** Builds every part from the config and starts serving. */
export async function startGateway(o: GatewayOptions): Promise<Gateway> {
  const { config, logger } = o;
  const deferred = o.metrics ? undefined : new DeferredMetrics();
  const metrics: GatewayMetrics = o.metrics ?? deferred ?? noMetrics;
  const provider = new URL(config.llm.base_url).host;
  const stores = await openStores(config.session, logger, { exclusive: true });
  const configured = llmIsConfigured(config);
  const llmOptions = {
    baseUrl: config.llm.base_url,
    apiKey: config.llm.api_key,
    model: config.llm.model,
    maxConcurrency: config.llm.max_concurrency,
    requestsPerMinute: config.llm.requests_per_minute,
    timeoutMs: config.llm.timeout_ms,
    maxRetries: config.llm.max_retries,
    maxTokens: config.llm.max_tokens,
    temperature: config.llm.temperature,
    configured,
    logger: logger.child({ component: "llm" }),
    onRetry: () => metrics.retry("llm"),
  };
  let llm = o.llm ?? createOpenAiClient(llmOptions);
  if (!o.llm && (config.llm.fallback_model || config.llm.fallback_base_url)) {
    const sameHost = !config.llm.fallback_base_url || config.llm.fallback_base_url === config.llm.base_url;
    const fallback = createOpenAiClient({
      ...llmOptions,
      baseUrl: config.llm.fallback_base_url ?? config.llm.base_url,
      apiKey: config.llm.fallback_api_key ?? (sameHost ? config.llm.api_key : ""),
      model: config.llm.fallback_model ?? config.llm.model,
      configured: true,
      logger: logger.child({ component: "llm", fallback: true }),
    });
    llm = withFallback(llm, fallback, logger.child({ component: "llm" }));
  }
  if (!llm.configured) logger.warn(UNCONFIGURED_LLM_TEXT);

  const bus = new MemoryBus({
    bufferSize: config.bus.buffer_size,
    maxConcurrency: config.bus.max_concurrency,
    drainTimeoutMs: config.bus.drain_timeout_ms,
    logger: logger.child({ component: "bus" }),
    journal: (m) => stores.journal.accept(m),
  });
  const http = new GatewayHttpServer(logger.child({ component: "http" }), { allowedHosts: [...config.http.allowed_hosts, config.http.host] });
  const channels: Channel[] = o.channels ?? [];
  if (!o.channels && config.channels.webchat.enabled) {
    channels.push(
      new WebchatChannel({
        maxBodyBytes: config.http.max_body_bytes,
        allowFrom: config.channels.webchat.allow_from,
        denyByDefault: config.channels.webchat.deny_by_default,
        pagePath: join(PACKAGE_ROOT, "public", "index.html"),
        lookup: (id) => stores.journal.get(id),
        status: () => (llm.configured ? { llmConfigured: true } : { llmConfigured: false, hint: UNCONFIGURED_LLM_TEXT }),
      }),
    );
  }
  if (!o.channels && config.channels.telegram.enabled) {
    // Loaded only when enabled: grammy is not needed to start the web chat.
    const { createTelegramChannel } = await import("./channels/telegram/telegram-channel.js");
    channels.push(createTelegramChannel(config.channels.telegram, { maxBodyBytes: config.http.max_body_bytes }));
  }
  const byId = new Map(channels.map((c) => [c.id, c]));

  const redeliveryBaseMs = o.redeliveryBaseMs ?? 5_000;
  const redeliveries = new Set<NodeJS.Timeout>();
  /**
   * Sends a reply; resolves whether it went out. `stored` says its journal row is finished, so
   * it can be marked delivered. A platform that fails for now (a 5xx, a network error, a 429
   * past the channel's own retries) gets it again later, with growing waits, for as long as
   * the process runs; the row stays "finished", so a restart sends it too. One that refuses
   * it for good (a 4xx) is logged and not tried again.
   */
  const deliver = async (m: InboundMessage, text: string, isError: boolean, stored = true, attempt = 0): Promise<boolean> => {
    const channel = byId.get(m.channel);
    try {
      await channel?.send({ conversationId: m.conversationId, text, replyToId: m.id, idempotencyKey: `${m.id}:0`, isError });
      if (stored && channel?.resendAfterCrash !== false) stores.journal.delivered(m.id);
      if (attempt > 0) logger.info({ msgId: m.id, channel: m.channel, attempt }, "reply delivered on a later try");
      return true;
    } catch (err) {
      if (closing) {
        // Perhaps cut off by the shutdown itself.
        logger.error({ err, msgId: m.id, channel: m.channel }, "reply could not be delivered; the next start sends it again");
        return false;
      }
      if (err instanceof ChannelError && err.refused) {
        logger.error({ err, msgId: m.id, channel: m.channel }, "the platform refused the reply for good; not sending it again");
        if (stored) stores.journal.delivered(m.id);
        return false;
      }
      const retryAfter = err instanceof ChannelError ? err.retryAfterMs : undefined;
      const waitMs = retryAfter ?? backoffDelay(attempt, { baseMs: redeliveryBaseMs, capMs: 300_000 });
      logger.error({ err, msgId: m.id, channel: m.channel, attempt, retryInMs: waitMs }, "reply could not be delivered; trying again later");
      const timer = setTimeout(() => {
        redeliveries.delete(timer);
        void deliver(m, text, isError, stored, attempt + 1);
      }, waitMs);
      timer.unref();
      redeliveries.add(timer);
      return false;
    }
  };
  const reply: ReplySink = {
    delta(m, text) {
      byId.get(m.channel)?.preview?.(m.conversationId, m.id, text);
    },
    restart(m) {
      byId.get(m.channel)?.preview?.(m.conversationId, m.id, null);
    },
    async final(m, text, isError) {
      // Stored before it is sent: a crash after this point re-sends this text, never re-asks the LLM.
      let stored = true;
      try {
        await stores.journal.finish(m.id, text, isError, byId.get(m.channel)?.resendAfterCrash === false);
      } catch (err) {
        // The journal cannot be written (disk full, the file locked by another program). The
        // answer is in hand: the user gets it now rather than never. Its row stays "accepted",
        // so until a later write of it succeeds a restart would ask the LLM again: a second
        // answer rather than none.
        stored = false;
        logger.error({ err, msgId: m.id }, "reply could not be stored in the journal; sending it anyway");
      }
      const sent = await deliver(m, text, isError, stored);
      if (!stored) {
        // One more try once it was sent (marked delivered), or stored to be sent again: it
        // closes the row, or keeps the reply for a restart, if the store is back.
        stores.journal.finish(m.id, text, isError, sent || byId.get(m.channel)?.resendAfterCrash === false).catch((err: unknown) => {
          logger.error({ err, msgId: m.id }, "reply still not stored in the journal; a restart would answer this message again");
        });
      }
      metrics.outbound(m.channel, isError, Date.now() - m.receivedAt);
      if (isError) metrics.deadLetter(m.channel);
      o.onReply?.(m, isError);
    },
  };
  const agent = new Agent({
    llm,
    sessions: stores.sessions,
    reply,
    systemPrompt: config.agent.system_prompt,
    tools: builtinTools(),
    usage: new UsageMeter(stores.counters, config.limits.daily_tokens_per_user),
    logger: logger.child({ component: "agent" }),
    unconfiguredText: UNCONFIGURED_LLM_TEXT,
    ...(o.onLlmDone ? { onLlmDone: o.onLlmDone } : {}),
    onLlmCall: (_m, r) => metrics.llmCall(provider, r.ms, r.tokens, r.error),
  });
  let closing = false;
  let started = false;
  const flood = new FloodLimit({ perMinute: config.limits.messages_per_minute, burst: config.limits.burst });
  const slowDown = `You are sending messages faster than I can take them (${config.limits.messages_per_minute} a minute). Please slow down; messages sent now are not read.`;
  const publish = async (m: InboundMessage): Promise<void> => {
    const decision = flood.take(m.userId);
    if (decision !== "ok") {
      metrics.refused(m.channel, "flood");
      if (decision === "refuse-and-warn") {
        logger.warn({ userId: m.userId, channel: m.channel }, "flood limit: refusing messages from this user for now");
        const channel = byId.get(m.channel);
        void channel
          ?.send({ conversationId: m.conversationId, text: slowDown, replyToId: m.id, idempotencyKey: `${m.id}:flood`, isError: true })
          .catch((err: unknown) => logger.warn({ err, msgId: m.id }, "could not send the slow-down notice"));
      }
      throw new RefusedError("flood", "slow down: too many messages, try again in a minute", decision === "refuse-and-warn");
    }
    try {
      await bus.publish(m);
    } catch (err) {
      metrics.refused(m.channel, err instanceof BusFullError ? "bus_full" : err instanceof StorageError ? "store" : "closed");
      throw err;
    }
    metrics.inbound(m.channel);
  };
  const gauges = setInterval(() => metrics.setGauges({ busDepth: bus.depth, activeUsers: stores.sessions.hot }), 1_000);
  gauges.unref();

  // Probes (a load balancer's, an orchestrator's) may use any name; they learn nothing private.
  http.add("GET", "/healthz", (_req, res) => sendJson(res, 200, { status: "ok" }), { anyHost: true });
  http.add("GET", "/readyz", async (_req, res) => {
    const storeOk = await stores.healthy();
    const ok = storeOk && started && !closing;
    sendJson(res, ok ? 200 : 503, { status: ok ? "ready" : "not ready", store: storeOk ? "open" : "failing", config: "valid", closing });
  }, { anyHost: true });

  // What a crash or a cut-short drain left: finished replies are sent again from the journal,
  // accepted messages run again, in their original order, before anything new.
  let left: Awaited<ReturnType<typeof stores.journal.unfinished>>;
  let port: number;
  try {
    left = await stores.journal.unfinished();
    if (left.accepted.length > 0 || left.finished.length > 0) {
      logger.warn({ rerun: left.accepted.length, resend: left.finished.length }, "recovering unfinished messages from the journal");
    }
    bus.replay(left.accepted);
    // Listen before any channel starts: a taken port must fail the start before a Telegram
    // poller has taken updates, and a webhook must be served before setWebhook points at it.
    port = await http.listen(config.http.port, config.http.host);
  } catch (err) {
    // A failed start lets go of the store (and its lock): the same process may try again.
    // Replayed messages were never started; they stay in the journal for the next start.
    clearInterval(gauges);
    await bus.close(0);
    await stores.close().catch((closeErr: unknown) => logger.warn({ err: closeErr }, "closing the store after a failed start failed"));
    throw err;
  }
  const abort = new AbortController();
  try {
    for (const channel of channels) {
      const ctx: ChannelContext = {
        publish,
        logger: logger.child({ channel: channel.id }),
        signal: abort.signal,
        http,
        // Notices cost a send as replies do: they come out of the same allowance.
        mayAnswer: (userId) => {
          if (flood.take(userId) === "ok") return true;
          metrics.refused(channel.id, "flood");
          return false;
        },
      };
      if (channel.id === "telegram" && config.channels.telegram.pairing) {
        ctx.pair = (userId, name) => stores.pairing.request(userId, name);
      }
      await channel.start(ctx);
    }
  } catch (err) {
    // A channel that cannot start (a refused token) fails the whole start, cleanly.
    abort.abort();
    await Promise.allSettled(channels.map((c) => c.stop()));
    await http.close();
    await stores.close();
    throw err;
  }
  for (const f of left.finished) {
    if (byId.get(f.m.channel)?.resendAfterCrash === false) stores.journal.delivered(f.m.id);
    else await deliver(f.m, f.text, f.isError);
  }
  bus.consume(async (m, signal) => {
    const channel = byId.get(m.channel);
    if (!channel?.typing) return agent.handle(m, signal);
    // Platforms show "typing" for about 5 s per call: repeat it while the agent works.
    const typing = (): void => void channel.typing?.(m.conversationId).catch(() => undefined);
    typing();
    const timer = setInterval(typing, 4_500);
    try {
      await agent.handle(m, signal);
    } finally {
      clearInterval(timer);
    }
  });

  started = true;

  // Metrics, the admin endpoints and the LLM SDK load just after ready: together they are
  // ~60 ms of module loading that would otherwise hold up the first /readyz answer. A
  // message that arrives before then loads the SDK itself.
  let afterReady: NodeJS.Timeout | undefined;
  let skipAfterReady: () => void = () => undefined;
  const adminReady = new Promise<void>((resolve) => {
    skipAfterReady = resolve;
    afterReady = setTimeout(() => {
      llm.warm?.();
      if (!deferred) return resolve();
      Promise.all([import("./observability/metrics.js"), import("./observability/admin-routes.js")])
        .then(([{ createPromMetrics }, { registerAdminRoutes }]) => {
          const { metrics: prom, registry } = createPromMetrics();
          deferred.attach(prom);
          registerAdminRoutes(http, { registry, adminToken: config.http.admin_token, pagePath: join(PACKAGE_ROOT, "public", "dashboard.html") });
        })
        .catch((err: unknown) => logger.error({ err }, "metrics could not be loaded"))
        .finally(resolve);
    }, 100);
  });
  logger.info({ host: config.http.host, port, channels: channels.map((c) => c.id), store: config.session.store.split("://")[0] }, "zeptoclaw gateway ready");

  return {
    port,
    adminReady,
    stores,
    bus,
    publish,
    async close() {
      if (closing) return;
      closing = true;
      clearInterval(gauges);
      // Their rows stay "finished": the next start sends them.
      for (const timer of redeliveries) clearTimeout(timer);
      redeliveries.clear();
      clearTimeout(afterReady);
      skipAfterReady();
      const started = Date.now();
      const report = await bus.close(config.bus.drain_timeout_ms);
      if (report.aborted.length > 0 || report.unstarted.length > 0) {
        logger.warn({ aborted: report.aborted, unstarted: report.unstarted.length }, "drain budget ran out; these messages were not answered");
      }
      try {
        abort.abort();
        await Promise.allSettled(channels.map((c) => c.stop()));
        await http.close();
      } finally {
        // Flushed and closed whatever went before: the store and its lock are let go.
        await stores.close();
      }
      logger.info({ drainMs: Date.now() - started }, "zeptoclaw gateway stopped");
    },
  };
}
