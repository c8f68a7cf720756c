#!/usr/bin/env bash
# Install everything the tests need, start the servers they use, run them.
#   bash scripts/test.sh [pytest args...]
# srdose and the Python test dependencies go into ./.venv (scripts/setup.sh). System
# packages come from Debian (needs root or sudo): DCMTK and Orthanc as real DICOM peers,
# PostgreSQL as the second database engine, Chromium to render reports and (with
# chromium-driver) to drive the web application in a real browser. PostgreSQL is
# started here on 127.0.0.1, on a free port, and stopped on exit. ruff and mypy run first.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
need=()
[ -x /usr/bin/storescu ] || need+=(dcmtk)
[ -x /usr/sbin/Orthanc ] || [ -x /usr/bin/Orthanc ] || need+=(orthanc)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing Debian packages: ${need[*]}"
  $SUDO apt-get update -qq
  # no services started by package scripts: the tests start their own, on loopback
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

bash scripts/setup.sh '.[test]'
python=.venv/bin/python

echo "== lint, format and types (ruff, mypy; configured in pyproject.toml)"
"$python" -m ruff check .
"$python" -m ruff format --check .
"$python" -m mypy

pgdir=$(mktemp -d /tmp/srdose-ci-pg.XXXXXX); chmod 755 "$pgdir"
cleanup() { bash scripts/pg.sh stop "$pgdir/data" || true; rm -rf "$pgdir"; }
trap cleanup EXIT
free_port() {
  "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
echo "== starting PostgreSQL on 127.0.0.1"
url=""
for attempt in 1 2 3; do
  # another server may take the port between the choice and the start: choose again
  port=$(free_port)
  if url=$(bash scripts/pg.sh start "$pgdir/data" "$port"); then break; fi
  url=""
done
[ -n "$url" ] || { echo "PostgreSQL did not start (see above)" >&2; exit 3; }
export SRDOSE_TEST_POSTGRES_URL=$url

echo "== running the tests"
"$python" -m pytest -q -ra "$@"
