#!/usr/bin/env bash
# Fetch the wheels bench/gpu_tf.py needs on the device machines (Python 3.12, torch with CUDA and the
# NVIDIA libraries already there) into .whl/, which git ignores: mlx and mlx-cuda-13 (this machine's
# MLX version) and ltx-core 1.0.0. mlx-cuda-13's wheel (~90 MB) is over one `run` call's 64 MiB
# carry, so it is split in two: .whl/a holds its first half, .whl/b the rest and the small wheels.
# Usage: bash bench/gpu_wheels.sh; then the two `run` calls of the README's "GPU" bullet.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('mlx'))")
rm -rf .whl && mkdir -p .whl/dl .whl/a .whl/b
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_35_x86_64 --platform manylinux_2_31_x86_64 --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl/dl \
    "mlx==$version" "mlx-cuda-13==$version" "ltx-core==1.0.0" 2>&1 | grep -v "^WARNING: Location" || true
big=$(cd .whl/dl && ls mlx_cuda_13-*.whl)
size=$(stat -c %s ".whl/dl/$big")
head -c $((size / 2)) ".whl/dl/$big" > .whl/a/part1
tail -c +$((size / 2 + 1)) ".whl/dl/$big" > .whl/b/part2
echo "$big" > .whl/b/NAME
mv .whl/dl/mlx-*.whl .whl/dl/ltx_core-*.whl .whl/b/
rm -rf .whl/dl
du -sh .whl/a .whl/b
