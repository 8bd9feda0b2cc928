# The documented commands; the README repeats them.

# run the test suite (tiny configurations, goldens from the reference)
test *ARGS:
    python -m pytest -q {{ARGS}}

# lint and format check
lint:
    ruff check ltx stages cache tests bench
    ruff format --check ltx stages cache tests bench

# format the code
fmt:
    ruff format ltx stages cache tests bench
    ruff check --fix ltx stages cache tests bench

# the main job on the built-in tiny model: an .mp4 with sound
demo:
    ltx generate --prompt "A red fox trots through fresh snow at dawn" --output-path out/demo.mp4

# regenerate the parity goldens with the official PyTorch reference (own venv, ~2 GB)
goldens *ARGS: ref-venv
    .venv-ref/bin/python tests/reference/make_goldens.py {{ARGS}}

# the LTX-2.5 goldens with the 1.2.0 reference (its own venv: transformers 5.14)
goldens25 *ARGS: ref12-venv
    .venv-ref12/bin/python tests/reference/make_goldens.py --variant 2.5 {{ARGS}}

# the 1.2.0 reference's virtual environment (from the wheels in ../shared/reference/)
ref12-venv:
    bash tests/reference/setup_ref12_venv.sh

# the reference's virtual environment (torch CPU 2.13.0, ltx-core, ltx-pipelines, transformers<5)
ref-venv:
    bash tests/reference/setup_ref_venv.sh

# benchmarks against the reference and the MLX port, in one run
bench *ARGS:
    python bench/run.py {{ARGS}}
