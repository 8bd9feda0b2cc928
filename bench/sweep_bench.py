"""A 4-seed sweep against 4 separate `ltx generate` calls on the tiny model: stage runs and wall time.

    python bench/sweep_bench.py [--seeds 1-4] [--rounds 1] [--ray]

Each side runs as the user runs it (`ltx` subprocesses, `--json`), from an empty cache of its own (the
4 generate calls share theirs, as a user's do), on the tiny model at its default size (256x384, 25
frames). Stage runs are the stages each side computed (its `end` events with cached false); CPU is the
user + system time of the `ltx` processes (not of Ray's workers, which Ray's own processes start). The
files must be byte-identical. `--ray` adds the sweep on a local Ray cluster that it starts itself
(`--executor ray`, its start-up included).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROMPT = "A red fox trots through fresh snow at dawn"


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _ltx(cache: Path, *args: str) -> tuple[float, float, Counter]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LTX_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    t0, c0 = time.perf_counter(), _cpu()
    r = subprocess.run(
        [sys.executable, "-m", "stages.cli", "--cache-dir", str(cache), *args, "--json"],
        capture_output=True,
        text=True,
        env=env,
    )
    dt, cpu = time.perf_counter() - t0, _cpu() - c0
    if r.returncode:
        sys.exit(f"ltx {' '.join(args)} failed: {r.stderr.strip().splitlines()[-1:]}")
    events = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    return dt, cpu, Counter(e["stage"] for e in events if e["event"] == "end" and not e["cached"])


def _separate(root: Path, seeds: list[int]) -> tuple[float, float, Counter]:
    total, cpu, runs = 0.0, 0.0, Counter()
    for s in seeds:
        dt, c, ran = _ltx(
            root / "cache", "generate", "--prompt", PROMPT, "--seed", str(s), "--no-preview",
            "--output-path", str(root / "out" / f"seed{s}.mp4"),
        )  # fmt: skip
        total, cpu, runs = total + dt, cpu + c, runs + ran
    return total, cpu, runs


def _sweep(root: Path, seeds: str, *extra: str) -> tuple[float, float, Counter]:
    return _ltx(
        root / "cache",
        "sweep",
        "--prompt",
        PROMPT,
        "--seeds",
        seeds,
        "--output-path",
        str(root / "out"),
        *extra,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="1-4")
    ap.add_argument("--rounds", type=int, default=1, help="repeat the comparison, sides in turn")
    ap.add_argument("--ray", action="store_true", help="also the sweep on a local Ray cluster")
    a = ap.parse_args()
    lo, _, hi = a.seeds.partition("-")
    seeds = list(range(int(lo), int(hi or lo) + 1))
    sides = {"separate": None, "sweep": ()} | (
        {"sweep --executor ray": ("--executor", "ray")} if a.ray else {}
    )
    rows: dict[str, list[tuple[float, float, Counter]]] = {name: [] for name in sides}
    for _ in range(a.rounds):
        outs = {}
        for name, extra in sides.items():
            root = Path(tempfile.mkdtemp(prefix="ltx-sweep-bench-"))
            try:
                rows[name].append(_separate(root, seeds) if extra is None else _sweep(root, a.seeds, *extra))
                outs[name] = {p.name: p.read_bytes() for p in (root / "out").glob("*.mp4")}
            finally:
                shutil.rmtree(root, ignore_errors=True)
        first = outs["separate"]
        assert len(first) == len(seeds) and all(o == first for o in outs.values()), "outputs differ"
    print(f"{len(seeds)} seeds, tiny model 256x384, 25 frames; outputs byte-identical across sides")
    print("| side | stage runs | of which encode | wall time (s) | CPU of the ltx processes (s) |")
    print("|---|---|---|---|---|")
    for name, results in rows.items():
        wall = sorted(t for t, _, _ in results)[len(results) // 2]
        cpu = sorted(c for _, c, _ in results)[len(results) // 2]
        runs = results[0][2]
        cpu_text = "-" if "ray" in name else f"{cpu:.1f}"
        print(f"| `{name}` | {sum(runs.values())} | {runs['encode']} | {wall:.1f} | {cpu_text} |")


if __name__ == "__main__":
    main()
