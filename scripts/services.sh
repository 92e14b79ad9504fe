#!/usr/bin/env bash
# Starts Redis and PostgreSQL on 127.0.0.1 where they do not already answer (a fresh machine), so the
# tests that need them run against real servers. Idempotent.
set -uo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! port_open 6379; then
  if ! command -v redis-server >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq redis-server) >/dev/null 2>&1 || true
  fi
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/delbench-tests.log >/dev/null 2>&1 || true
fi

if ! port_open 5432; then
  if ls /etc/postgresql >/dev/null 2>&1; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start >/dev/null 2>&1 || true
  fi
fi

for _ in $(seq 1 50); do
  port_open 6379 && port_open 5432 && break
  sleep 0.2
done
port_open 6379 || echo "services: Redis does not answer on 127.0.0.1:6379; tests marked 'redis' will be skipped"
port_open 5432 || echo "services: PostgreSQL does not answer on 127.0.0.1:5432; tests marked 'postgres' will be skipped"
exit 0
