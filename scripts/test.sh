#!/usr/bin/env bash
# Install everything the tests need, start the servers they use, run them.
#   bash scripts/test.sh [pytest args...]
# System packages come from Debian (needs root or sudo): DCMTK and Orthanc as
# real DICOM peers, PostgreSQL as the second database engine, Chromium to
# render reports. PostgreSQL is started here on 127.0.0.1 and stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
need=()
[ -x /usr/bin/storescu ] || need+=(dcmtk)
[ -x /usr/sbin/Orthanc ] || [ -x /usr/bin/Orthanc ] || need+=(orthanc)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing Debian packages: ${need[*]}"
  $SUDO apt-get update -qq
  # no services started by package scripts: the tests start their own, on loopback
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

echo "== installing srdose and its test dependencies"
python3 -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | grep -v "Running pip as the 'root' user" || true

pgdir=$(mktemp -d /tmp/srdose-ci-pg.XXXXXX); chmod 755 "$pgdir"
cleanup() { bash scripts/pg.sh stop "$pgdir/data" || true; rm -rf "$pgdir"; }
trap cleanup EXIT
echo "== starting PostgreSQL on 127.0.0.1"
SRDOSE_TEST_POSTGRES_URL=$(bash scripts/pg.sh start "$pgdir/data" 55432)
export SRDOSE_TEST_POSTGRES_URL

echo "== running the tests"
python3 -m pytest -q -ra "$@"
