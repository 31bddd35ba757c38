#!/usr/bin/env bash
# The whole test suite: installs what the tests need, then runs every test.
#
#  - Debian's chromium and chromium-driver, for the dashboard's browser test (with
#    apt-get, as root or through sudo, when they are missing);
#  - the official `openai` Python package, in target/sdk-venv, for the SDK compatibility
#    test (from PyPI, once);
#  - then `cargo test --workspace`.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! { command -v chromium && command -v chromedriver; } >/dev/null 2>&1; then
  echo "== installing chromium and chromium-driver for the browser test"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  if command -v apt-get >/dev/null 2>&1; then
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
  else
    echo "no apt-get here: install Chromium and ChromeDriver yourself; the browser test is skipped without them" >&2
  fi
fi

OPENAI_SDK_VERSION="3.57.0"
if ! target/sdk-venv/bin/python -c "import openai" 2>/dev/null; then
  echo "== installing the openai Python package into target/sdk-venv"
  python3 -m venv target/sdk-venv
  target/sdk-venv/bin/pip install --quiet --disable-pip-version-check "openai==${OPENAI_SDK_VERSION}"
fi

echo "== cargo test --workspace"
cargo test --workspace "$@"
