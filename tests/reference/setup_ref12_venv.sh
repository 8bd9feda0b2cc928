#!/usr/bin/env bash
# Create .venv-ref12 with the official 1.2.0 reference (LTX-2.5) from the wheels in ../shared/reference/
# (see ../shared/reference-env.md). It needs transformers>=5.8,<5.15; the 1.0.0 venv needs <5.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -x .venv-ref12/bin/python ] && .venv-ref12/bin/python -c "import ltx_pipelines, ltx_core" 2>/dev/null; then exit 0; fi
WHEELS=${LTX_REF12_WHEELS:-../shared/reference}
python3 -m venv .venv-ref12
# Pin torch: a bare `torch` would pull a multi-GB CUDA build.
.venv-ref12/bin/pip install -q torch==2.13.0
.venv-ref12/bin/pip install -q "transformers==5.14.1" einops numpy av safetensors accelerate "scipy>=1.14" \
    tqdm pillow cloudpickle openimageio torchaudio sentencepiece protobuf librosa soundfile
rm -f .venv-ref12/lib/python3.*/site-packages/torchaudio/lib/*.so
# --no-deps: ltx-core 1.2.0 declares mps-sdpa (macOS only) and a torch range pip may meet with a CUDA build
.venv-ref12/bin/pip install -q --no-deps "$WHEELS"/ltx_core-1.2.0-py3-none-any.whl \
    "$WHEELS"/ltx_pipelines-1.2.0-py3-none-any.whl
.venv-ref12/bin/python -c "import transformers, ltx_core, ltx_pipelines"
