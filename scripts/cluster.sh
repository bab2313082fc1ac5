#!/usr/bin/env bash
# A three-node RabbitMQ cluster on this machine, beside (never touching) the main broker on
# 5672: nodes rabbit-c1..c3@localhost on AMQP ports 5681..5683, each with its own config, data,
# logs, plugins and feature-flags files under $CLUSTER_DIR, joined with join_cluster.
#
#   scripts/cluster.sh start         start the nodes (installing RabbitMQ first if needed) and join them
#   scripts/cluster.sh stop-node N   stop node N's app (as a dying node would), leaving the others
#   scripts/cluster.sh start-node N  start node N's app again
#   scripts/cluster.sh stop          stop the three nodes
#   scripts/cluster.sh clean         stop them and delete their data
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin"

dir=${CLUSTER_DIR:-/var/tmp/amqp-cluster}
nodes=(1 2 3)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else echo "cluster.sh: need root (or sudo) to run: $*" >&2; exit 1
  fi
}

name() { echo "rabbit-c$1@localhost"; }
ctl() { local n=$1; shift; as_root rabbitmqctl -q -n "$(name "$n")" "$@"; }

start_node() {
  local n=$1 home="$dir/c$1"
  if ctl "$n" ping >/dev/null 2>&1; then return; fi
  as_root mkdir -p "$home/mnesia" "$home/log"
  printf 'listeners.tcp.local = 127.0.0.1:568%s\nloopback_users = none\n' "$n" | as_root tee "$home/rabbitmq.conf" >/dev/null
  echo '[].' | as_root tee "$home/enabled_plugins" >/dev/null
  as_root chown -R rabbitmq:rabbitmq "$dir"
  # The wrapper runs the node as the rabbitmq user, which shares the main node's cookie.
  as_root env RABBITMQ_NODENAME="$(name "$n")" RABBITMQ_NODE_PORT="568$n" RABBITMQ_DIST_PORT="2568$n" \
    RABBITMQ_CONFIG_FILE="$home/rabbitmq.conf" RABBITMQ_MNESIA_BASE="$home/mnesia" \
    RABBITMQ_LOG_BASE="$home/log" RABBITMQ_ENABLED_PLUGINS_FILE="$home/enabled_plugins" \
    RABBITMQ_FEATURE_FLAGS_FILE="$home/feature_flags" RABBITMQ_PID_FILE="$home/pid" \
    rabbitmq-server -detached
}

wait_node() {
  for _ in $(seq 1 120); do
    if ctl "$1" await_startup >/dev/null 2>&1; then return; fi
    sleep 1
  done
  echo "cluster.sh: node $(name "$1") did not start; its log is in $dir/c$1/log" >&2
  exit 1
}

case "${1:-}" in
  start)
    bash scripts/rabbitmq.sh >/dev/null # installs RabbitMQ where it is missing
    for n in "${nodes[@]}"; do start_node "$n"; done
    for n in "${nodes[@]}"; do wait_node "$n"; done
    for n in 2 3; do
      if ! ctl "$n" cluster_status | grep -q "$(name 1)"; then
        ctl "$n" stop_app
        ctl "$n" reset
        ctl "$n" join_cluster "$(name 1)"
        ctl "$n" start_app
      fi
    done
    for n in "${nodes[@]}"; do ctl "$n" await_startup; done
    echo "cluster.sh: nodes $(name 1), $(name 2), $(name 3) on 127.0.0.1:5681-5683, clustered"
    ;;
  stop-node) ctl "$2" stop_app ;;
  start-node) ctl "$2" start_app; ctl "$2" await_startup ;;
  stop)
    for n in "${nodes[@]}"; do ctl "$n" stop >/dev/null 2>&1 || true; done
    ;;
  clean)
    for n in "${nodes[@]}"; do ctl "$n" stop >/dev/null 2>&1 || true; done
    as_root rm -rf "$dir"
    ;;
  *)
    echo "usage: scripts/cluster.sh start | stop-node N | start-node N | stop | clean" >&2
    exit 2
    ;;
esac
