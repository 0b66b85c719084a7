#!/usr/bin/env bash
# Start the local services the tests and benchmarks talk to, if they are down.
# PostgreSQL on 127.0.0.1:5432 (trust auth) and Redis on 127.0.0.1:6379, as on the team's machines.
# Debian's chromium too, for the browser test of the review page.
set -euo pipefail

wait_for() {  # wait_for NAME COMMAND...: up to 30 s
  local name=$1; shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "services: $name did not come up" >&2
  return 1
}

if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
  wait_for PostgreSQL pg_isready -q -h 127.0.0.1 -p 5432
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "services: starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for Redis redis-cli -h 127.0.0.1 -p 6379 ping
fi

# The review page's browser test (tests/browser) drives Debian's chromium through Playwright
# (Playwright's own browser download cannot reach its server from these machines).
if [ ! -x /usr/bin/chromium ]; then
  echo "services: installing chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends chromium \
    || { apt-get update -q && apt-get install -y -q --no-install-recommends chromium; }
fi
