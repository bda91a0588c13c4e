// PM2: `pm2 start ecosystem.config.cjs`. One process in fork mode: the embedded default
// keeps its bus and SQLite sessions in this process, so it must not be clustered (a second
// instance on the same store exits at start: the gateway holds a lock on it).
module.exports = {
  apps: [
    {
      name: "zeptoclaw",
      script: "dist/app/cli.js",
      args: "gateway --config config/default.toml",
      // GATEWAY_NODE_FLAGS in src/package-info.ts: why, and the bench runs with the same.
      node_args: ["--max-semi-space-size=32"],
      cwd: __dirname,
      exec_mode: "fork",
      instances: 1,
      // The gateway calls process.send("ready") once it serves; PM2 waits for it.
      wait_ready: true,
      listen_timeout: 10000,
      // Above bus.drain_timeout_ms (10 s) so a drain is never cut short by SIGKILL.
      kill_timeout: 15000,
      max_memory_restart: "400M",
      autorestart: true,
      exp_backoff_restart_delay: 200,
      merge_logs: true,
      env: { NODE_ENV: "production" },
    },
  ],
};
