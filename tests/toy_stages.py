"""Test-only stages for the store and framework tests (no model code).

Also runnable as a script, so tests can kill or race real processes:
    python tests/toy_stages.py CACHE_DIR SEED [--sleep S] [--rows N]
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stages.framework import Node, Stage  # noqa: E402

CALLS: list[str] = []


@dataclass(frozen=True)
class MakeParams:
    seed: int
    rows: int = 8
    sleep: float = 0.0


def make_compute(ctx, params: MakeParams):
    CALLS.append("make")
    if os.environ.get("TOY_CALL_LOG"):
        with open(os.environ["TOY_CALL_LOG"], "a") as f:
            f.write(f"make {os.getpid()}\n")
    rng = np.random.RandomState(params.seed)
    out = ctx.output("x", (params.rows, 64), np.float32)
    for _ in range(params.rows):  # stream rows slowly so a test can kill mid-publish
        out.write(rng.standard_normal((1, 64)).astype(np.float32))
        time.sleep(params.sleep)
    return {"label": np.array([params.seed], np.int64)}


MAKE = Stage("make", 1, MakeParams, (), make_compute, "seed -> x")


@dataclass(frozen=True)
class ScaleParams:
    factor: float


def scale_compute(ctx, params: ScaleParams, x):
    CALLS.append("scale")
    if os.environ.get("TOY_FAIL_SCALE"):
        raise RuntimeError("boom")
    return {"y": x["x"] * params.factor}


SCALE = Stage("scale", 1, ScaleParams, ("x",), scale_compute, "x -> y")


@dataclass(frozen=True)
class StepsParams:
    steps: int


def steps_compute(ctx, params: StepsParams, x):
    """A resumable loop: state_{k+1} = state_k * 0.5 + k, checkpointed after every step."""
    start, state = 0, x["x"]
    resumed = ctx.resume(params.steps)
    if resumed:
        start, arrays = resumed
        state = arrays["state"]
    for k in range(start, params.steps):
        CALLS.append(f"step{k}")
        state = state * np.float32(0.5) + np.float32(k)
        ctx.checkpoint(k + 1, {"state": state})
        if os.environ.get("TOY_DIE_AT_STEP") == str(k + 1):
            os._exit(9)
    return {"state": state}


STEPS = Stage("steps", 1, StepsParams, ("x",), steps_compute, "x -> state")


@dataclass(frozen=True)
class FlakyParams:
    log: str  # a file: one line per call
    # what call k does: "exit" (its process dies), "eio" (an I/O error), "fail" (another error), "ok"
    actions: tuple[str, ...]


def flaky_compute(ctx, params: FlakyParams, x):
    """Fails as told, call by call (counted in `log`, so across processes): tests of retries."""
    with open(params.log, "a+") as f:
        f.seek(0)
        calls = len(f.read().splitlines())
        f.write(f"call {os.getpid()}\n")
    action = params.actions[min(calls, len(params.actions) - 1)]
    if action == "exit":
        os._exit(9)
    if action == "eio":
        raise OSError(5, "Input/output error (injected)")
    if action == "fail":
        raise RuntimeError("boom (injected)")
    return {"y": x["x"] + np.float32(1)}


FLAKY = Stage("flaky", 1, FlakyParams, ("x",), flaky_compute, "x -> y")


def chain(seed: int, factor: float = 2.0, rows: int = 8, sleep: float = 0.0) -> Node:
    return Node(SCALE, ScaleParams(factor), {"x": Node(MAKE, MakeParams(seed, rows, sleep))})


if __name__ == "__main__":
    from cache.store import Store
    from stages.framework import ensure

    cache_dir, seed = sys.argv[1], int(sys.argv[2])
    sleep = float(sys.argv[sys.argv.index("--sleep") + 1]) if "--sleep" in sys.argv else 0.0
    rows = int(sys.argv[sys.argv.index("--rows") + 1]) if "--rows" in sys.argv else 8
    if "--steps" in sys.argv:
        node = Node(
            STEPS,
            StepsParams(int(sys.argv[sys.argv.index("--steps") + 1])),
            {"x": Node(MAKE, MakeParams(seed, rows))},
        )
    else:
        node = chain(seed, rows=rows, sleep=sleep)
    art = ensure(Store(cache_dir), node, echo=lambda m: print(m, file=sys.stderr))
    print(art.key)
