#!/usr/bin/env bash
# Makes sure a RabbitMQ broker answers on 127.0.0.1:5672: installs Debian's rabbitmq-server
# if it is missing (as root, or through sudo), starts it if it is down, and waits until it
# accepts AMQP connections; then enables the plugins the tests use (the consistent-hash exchange,
# which ships with RabbitMQ). Fails loudly: the tests must never skip for want of a broker.
set -euo pipefail

host=127.0.0.1
port=${AMQP_TEST_PORT:-5672}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else echo "rabbitmq.sh: need root (or sudo) to run: $*" >&2; exit 1
  fi
}

accepts() {
  # A broker that is up answers our protocol header with connection.start (frame type 1).
  timeout 5 bash -c "exec 3<>/dev/tcp/$host/$port && printf 'AMQP\x00\x00\x09\x01' >&3 && head -c 1 <&3 | od -An -tx1 | grep -q 01" 2>/dev/null
}

export PATH="$PATH:/usr/sbin"

# Enabling an enabled plugin changes nothing, and enabling one needs no broker restart.
ready() {
  echo "rabbitmq.sh: RabbitMQ answers on $host:$port"
  as_root rabbitmq-plugins -q enable rabbitmq_consistent_hash_exchange >/dev/null
  exit 0
}

if accepts; then ready; fi

if ! command -v rabbitmq-server >/dev/null 2>&1 && [ ! -x /usr/sbin/rabbitmq-server ]; then
  echo "rabbitmq.sh: installing Debian's rabbitmq-server"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q rabbitmq-server
fi

# The Debian package may have started it already (where services start on install).
if ! accepts; then
  echo "rabbitmq.sh: starting RabbitMQ"
  as_root rabbitmq-server -detached || true
fi

for _ in $(seq 1 120); do
  if accepts; then ready; fi
  sleep 1
done
echo "rabbitmq.sh: RabbitMQ did not accept connections on $host:$port within 120 s" >&2
as_root rabbitmqctl status >&2 || true
exit 1
