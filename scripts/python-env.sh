#!/usr/bin/env bash
# Makes the Python environment of the interop tests: a venv at target/pyenv with the pinned
# packages of tests/interop/requirements.txt. Idempotent and safe to run from several test
# processes at once (a lock serialises them; a stamp skips pip when nothing changed). Prints
# the venv's python on its last line. Fails loudly: the interop tests must never skip.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/pyenv
requirements=tests/interop/requirements.txt
stamp=$venv/requirements.installed

mkdir -p target
exec 9>target/pyenv.lock
flock 9

# A fresh Debian may lack Python or its venv module: install them as the broker script does.
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  echo "python-env.sh: installing python3 and python3-venv" >&2
  if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
  ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
  ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3 python3-venv >&2
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "python-env.sh: creating $venv" >&2
  python3 -m venv "$venv"
fi

if ! cmp -s "$requirements" "$stamp"; then
  echo "python-env.sh: installing $requirements into $venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes -r "$requirements" >&2
  cp "$requirements" "$stamp"
fi

echo "$PWD/$venv/bin/python"
