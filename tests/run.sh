#!/usr/bin/env bash
# The whole test suite: installs what the tests need, then runs every test.
#
#  - the official `openai` Python package, in target/sdk-venv, for the SDK compatibility
#    test (from PyPI, once);
#  - then `cargo test --workspace`.
set -euo pipefail
cd "$(dirname "$0")/.."

OPENAI_SDK_VERSION="3.57.0"
if ! target/sdk-venv/bin/python -c "import openai" 2>/dev/null; then
  echo "== installing the openai Python package into target/sdk-venv"
  python3 -m venv target/sdk-venv
  target/sdk-venv/bin/pip install --quiet --disable-pip-version-check "openai==${OPENAI_SDK_VERSION}"
fi

echo "== cargo test --workspace"
cargo test --workspace "$@"
