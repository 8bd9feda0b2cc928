#!/usr/bin/env bash
# Create .venv-ref with the official reference (see ../shared/reference-env.md for the traps).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -x .venv-ref/bin/python ] && .venv-ref/bin/python -c "import ltx_pipelines" 2>/dev/null; then exit 0; fi
python3 -m venv .venv-ref
# Pin torch: a bare `torch` would pull a multi-GB CUDA build.
.venv-ref/bin/pip install -q torch==2.13.0
.venv-ref/bin/pip install -q ltx-core==1.0.0 ltx-pipelines==1.0.0 "transformers>=4.52,<5" sentencepiece protobuf numpy safetensors librosa soundfile
# pip resolves a CUDA-linked torchaudio; without its compiled libs it falls back to pure Python,
# which is all LTX uses (MelSpectrogram, resample).
rm -f .venv-ref/lib/python3.*/site-packages/torchaudio/lib/*.so
.venv-ref/bin/python -c "import transformers, ltx_core, ltx_pipelines"
