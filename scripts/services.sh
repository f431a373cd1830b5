#!/usr/bin/env bash
# Make sure the services the test suite talks to are up, starting any that is down.
set -u
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_for() {
  local name=$1 port=$2
  for _ in $(seq 1 60); do up "$port" && return 0; sleep 1; done
  echo "services: $name did not come up on 127.0.0.1:$port" >&2
  return 1
}
status=0
if ! up 5432; then
  echo "services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
  wait_for PostgreSQL 5432 || status=1
fi
if ! up 6379; then
  echo "services: starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for Redis 6379 || status=1
fi
# RabbitMQ reserves file handles for every quorum queue; at the soft limit `su` gives it (1024)
# a run's few hundred queues exhaust them and new connections stall for tens of seconds. Its env
# file (sourced as the rabbitmq user) raises the soft limit to the hard one.
RABBITMQ_ENV=/etc/rabbitmq/rabbitmq-env.conf
RAISE_LIMIT='ulimit -n "$(ulimit -Hn)" 2>/dev/null || true  # townhall: file handles for quorum queues'
rabbitmq_handles() {
  rabbitmqctl -q status 2>/dev/null | sed -n '/File Descriptors/,/limit/p' | grep -o 'limit: [0-9]*' | grep -o '[0-9]*'
}
if [ -d /etc/rabbitmq ] && ! grep -qF "$RAISE_LIMIT" "$RABBITMQ_ENV" 2>/dev/null; then
  echo "$RAISE_LIMIT" >> "$RABBITMQ_ENV"
fi
if up 5672; then
  handles=$(rabbitmq_handles)
  if [ -n "$handles" ] && [ "$handles" -lt 4096 ]; then
    echo "services: RabbitMQ has $handles file handles; restarting it with the hard limit"
    rabbitmqctl -q stop >/dev/null 2>&1
    for _ in $(seq 1 30); do up 5672 || break; sleep 1; done
  fi
fi
if ! up 5672; then
  echo "services: starting RabbitMQ"
  rabbitmq-server -detached
  wait_for RabbitMQ 5672 || status=1
  for _ in $(seq 1 60); do rabbitmqctl -q await_startup >/dev/null 2>&1 && break; sleep 1; done
fi
if ! up 4222; then
  echo "services: starting NATS"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  wait_for NATS 4222 || status=1
fi
# The uploads tests start a clamd of their own (tests/support/clamd.py) from Debian's
# clamav-daemon: install it when missing, without starting the system's clamd or freshclam
# (policy-rc.d answers 101, "not allowed", while the packages install).
if [ ! -x /usr/sbin/clamd ]; then
  echo "services: installing clamav-daemon"
  policy=/usr/sbin/policy-rc.d
  own_policy=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && own_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends clamav-daemon; }; then
    echo "services: could not install clamav-daemon" >&2
    status=1
  fi
  [ -n "$own_policy" ] && rm -f "$policy"
fi
exit $status
