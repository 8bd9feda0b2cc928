#!/usr/bin/env bash
# The second of the two `run` calls on a device machine (README, "GPU"): join mlx-cuda-13's wheel
# from /tmp/parts/part1 (copied there by the first call) and .whl/b/part2, install it with the other
# wheels of bench/gpu_wheels.sh into /tmp/site, let MLX's CUDA library find the NVIDIA libraries that
# torch's wheels brought (its RPATH looks in ../../nvidia from mlx/lib), then run bench/gpu_tf.py
# (arguments pass through) with its table written to $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
name=$(cat .whl/b/NAME)
cat /tmp/parts/part1 .whl/b/part2 > "/tmp/$name"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "/tmp/$name" .whl/b/*.whl
if nv=$(python3 -c "import nvidia; print(list(nvidia.__path__)[0])" 2>/dev/null); then
    ln -sfn "$nv" /tmp/site/nvidia
fi
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
python3 -c "import mlx.core as mx, torch; print('mlx', mx.__version__, mx.default_device(), '| torch', torch.__version__, torch.cuda.get_device_name())"
python3 bench/gpu_tf.py --output "${OUT:-.}/gpu_results.md" "$@"
