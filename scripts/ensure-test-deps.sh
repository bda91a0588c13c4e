#!/usr/bin/env bash
# Installs or starts what the test suite needs beyond npm packages, so `npm test` works on
# a fresh machine: Debian's Chromium (the dashboard test drives it with playwright-core).
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure-test-deps: installing chromium from apt" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "ensure-test-deps: chromium is missing; install it (Debian: apt-get install chromium)" >&2
    exit 1
  fi
fi
