#!/usr/bin/env bash
# Create ./.venv and install srdose into it (editable). A virtual environment, because
# Debian's and Ubuntu's own Python refuse `pip install` outside one (externally managed).
#   bash scripts/setup.sh            srdose
#   bash scripts/setup.sh '.[test]'  srdose and what the tests need
# Then run .venv/bin/srdose (or `. .venv/bin/activate` and srdose).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:-.}
python=${PYTHON:-python3}

venv_ok() { [ -x .venv/bin/python ] && .venv/bin/python -m pip --version >/dev/null 2>&1; }

if ! venv_ok; then
  # Debian ships venv's pip bootstrap (ensurepip) apart, in python3-venv
  if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
      echo "== installing Debian package python3-venv"
      SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
      $SUDO apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    else
      echo "$python cannot create a virtual environment (no venv/ensurepip module): install your" \
           "system's Python venv package" >&2
      exit 3
    fi
  fi
  echo "== creating the virtual environment .venv"
  # the system's site packages stay visible (numpy, matplotlib ... when the system has them);
  # pip installs the rest into .venv
  "$python" -m venv --clear --system-site-packages .venv
fi

echo "== installing srdose into .venv: $target"
.venv/bin/python -m pip install -q --disable-pip-version-check -e "$target" 2>&1 \
  | { grep -v "Running pip as the 'root' user" || true; }
