#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers on 127.0.0.1:5432 with trust auth for the user
# postgres and a database `test`: installs Debian's postgresql if it is missing (as root, or
# through sudo), starts its cluster if it is down, and waits until it accepts connections.
# Fails loudly: the durable stores' tests must never skip for want of a database.
set -euo pipefail

host=127.0.0.1
port=${PG_TEST_PORT:-5432}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else echo "postgres.sh: need root (or sudo) to run: $*" >&2; exit 1
  fi
}

# As the postgres system user, which the Debian cluster trusts over its local socket.
as_postgres() {
  if [ "$(id -un)" = postgres ]; then "$@"; else as_root runuser -u postgres -- "$@"; fi
}

ready() {
  psql -h "$host" -p "$port" -U postgres -d test -tAc 'SELECT 1' >/dev/null 2>&1
}

if command -v psql >/dev/null 2>&1 && ready; then
  echo "postgres.sh: PostgreSQL answers on $host:$port (database test)"
  exit 0
fi

if [ ! -d /etc/postgresql ] || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
  echo "postgres.sh: installing Debian's postgresql"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql
fi

version=$(ls /etc/postgresql | sort -V | tail -n 1)
conf=/etc/postgresql/$version/main
export PATH="/usr/lib/postgresql/$version/bin:$PATH"

# The tests connect over TCP as postgres without a password: trust loopback, ahead of the
# packaged rules (the first matching line wins).
if ! as_root grep -Eq '^host[[:space:]]+all[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$conf/pg_hba.conf"; then
  echo "postgres.sh: trusting 127.0.0.1 and ::1 in $conf/pg_hba.conf"
  as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$conf/pg_hba.conf"
  if as_root pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" && $4 == "online"' | grep -q .; then
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload
  fi
fi

if ! as_root pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" && $4 == "online"' | grep -q .; then
  echo "postgres.sh: starting the PostgreSQL $version cluster"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
fi

for _ in $(seq 1 60); do
  if as_postgres psql -p "$port" -tAc 'SELECT 1' >/dev/null 2>&1; then break; fi
  sleep 1
done

if [ "$(as_postgres psql -p "$port" -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'")" != 1 ]; then
  echo "postgres.sh: creating the database test"
  as_postgres createdb -p "$port" test
fi

for _ in $(seq 1 60); do
  if ready; then
    echo "postgres.sh: PostgreSQL answers on $host:$port (database test)"
    exit 0
  fi
  sleep 1
done
echo "postgres.sh: PostgreSQL did not accept connections on $host:$port within 60 s" >&2
as_root pg_lsclusters >&2 || true
exit 1
