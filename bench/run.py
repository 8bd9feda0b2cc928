"""Benchmarks of this project against the PyTorch reference (ltx-core) and the public MLX port
`mlx-video-with-audio`, measured in one run on the same configuration and inputs.

    python bench/run.py                      # everything, writes bench/results.md
    python bench/run.py --only startup,micro --runs 5
    python bench/run.py --quick              # small token counts: a smoke test of the harness

Every implementation runs as a subprocess of its own virtual environment (.venv: this project,
.venv-ref: torch + ltx-core, .venv-port: mlx-video-with-audio, created here when missing) on
inputs and weights saved to a temporary directory. Each worker makes one untimed warm-up call and
then `--runs` timed calls; the table reports medians. The transformer's two workers (ours, the
reference) stay up side by side and take turns call by call, runs x rounds pairs (interleaved());
its row also gives the median and range of the per-pair ratios. Tests never assert times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

ROOT = common.ROOT
BENCH = ROOT / "bench"
VENVS = {"ours": ROOT / ".venv", "ref": ROOT / ".venv-ref", "port": ROOT / ".venv-port"}
# mlx[cpu]: on Linux the plain mlx wheel has no backend (libmlx.so comes with mlx-cpu)
PORT_PACKAGES = ["mlx-video-with-audio==0.1.37", "mlx[cpu]", "mkl"]
SECTIONS = ("startup", "micro", "transformer", "components", "generate", "memory", "redecode")
OPTIONAL = ("vae",)
EXTRA: list[str] = []  # markdown sections appended after the table


def py(name: str) -> Path:
    return VENVS[name] / "bin" / "python"


def ensure_port_venv() -> bool:
    if py("port").exists():
        return True
    print("creating .venv-port with", " ".join(PORT_PACKAGES), flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(VENVS["port"])], check=True)
        subprocess.run([str(py("port")), "-m", "pip", "install", "-q", *PORT_PACKAGES], check=True)
    except (subprocess.CalledProcessError, OSError) as e:
        print(f"could not create .venv-port ({e}); the port column is skipped", flush=True)
        return False
    return True


def worker(name: str, script: str, args: list[str], timeout: float = 3600) -> dict | None:
    """Run bench/<script> with the `name` venv; its BENCH_RESULT line, or None on failure."""
    if not py(name).exists():
        print(f"  [{name}] {VENVS[name].name} is missing: skipped", flush=True)
        return None
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    p = subprocess.run(
        [str(py(name)), str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )
    for line in p.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            res = json.loads(line[len("BENCH_RESULT ") :])
            times = ", ".join(f"{t:.3g}" for t in res.get("times", []))
            took = (
                f"{times} s ({time.perf_counter() - t0:.0f} s wall)"
                if times
                else f"{time.perf_counter() - t0:.1f} s wall"
            )
            print(f"  [{name}] {script} {' '.join(args[-4:])}: {took}", flush=True)
            return res
    print(f"  [{name}] {script} failed (rc {p.returncode}):\n{p.stderr[-3000:]}", flush=True)
    return None


def interleaved(jobs: dict[str, tuple[str, list[str]]], runs: int, timeout: float = 3600) -> dict | None:
    """Run the workers of `jobs` (name -> (script, args)) side by side, one timed call at a time in
    turn (common.timed's BENCH_INTERLEAVE mode: each worker loads and warms up, then waits for a line
    on stdin before every timed call; the first waits until all have warmed up), swapping the order
    every pair: each pair of calls sees the same machine speed, which drifts on this shared machine
    by more than the differences measured. Each worker's BENCH_RESULT line by name, or None if one
    is missing or fails."""
    if not all(py(name).exists() for name in jobs):
        print(f"  {', '.join(n for n in jobs if not py(n).exists())}: venv missing: skipped", flush=True)
        return None
    env = dict(os.environ, PYTHONPATH=str(ROOT), BENCH_INTERLEAVE="1")
    errs = {name: tempfile.TemporaryFile("w+") for name in jobs}  # not a pipe: nobody reads it meanwhile
    procs = {
        name: subprocess.Popen(
            [str(py(name)), str(BENCH / script), *args, "--runs", str(runs)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errs[name],
            text=True,
            env=env,
            cwd=ROOT,
        )
        for name, (script, args) in jobs.items()
    }
    t0 = time.perf_counter()

    def next_line(name: str, tag: str) -> str | None:
        for line in procs[name].stdout:
            if line.startswith(tag):
                return line
        return None

    def next_time(name: str) -> float | None:
        line = next_line(name, "BENCH_TIME ")
        return None if line is None else float(line.split()[1])

    results: dict[str, dict] = {}
    try:
        order = list(jobs)
        for name in order:  # every worker loaded and warmed up (they do that at once, side by side)
            if next_line(name, "BENCH_READY") is None:
                raise RuntimeError(f"{name} stopped before its first timed call")
        for i in range(runs):
            for name in order if i % 2 == 0 else order[::-1]:
                procs[name].stdin.write("go\n")
                procs[name].stdin.flush()
                if next_time(name) is None:
                    raise RuntimeError(f"{name} stopped")
        for name, p in procs.items():
            p.stdin.close()
            for line in p.stdout:
                if line.startswith("BENCH_RESULT "):
                    results[name] = json.loads(line[len("BENCH_RESULT ") :])
            p.wait(timeout=timeout)
    except (RuntimeError, BrokenPipeError, subprocess.TimeoutExpired) as e:
        for name, p in procs.items():
            p.kill()
            errs[name].seek(0)
            print(f"  [{name}] {jobs[name][0]} failed ({e}):\n{errs[name].read()[-3000:]}", flush=True)
        return None
    finally:
        for f in errs.values():
            f.close()
    for name, res in results.items():
        times = ", ".join(f"{t:.3g}" for t in res.get("times", []))
        print(f"  [{name}] {jobs[name][0]} (interleaved): {times} s", flush=True)
    print(f"  interleaved {runs} pairs in {time.perf_counter() - t0:.0f} s wall", flush=True)
    return results if len(results) == len(jobs) else None


# ----------------------------------------------------------------------------------------------
# sections: each returns rows (label, ours, ref, port, unit, note)


def bench_startup(a, tmp: Path) -> list[tuple]:
    """`ltx --help` and `ltx cache ls` must not import the model stack (mlx)."""
    code = (
        "import sys, time; t0 = time.perf_counter(); sys.argv = ['ltx'] + sys.argv[1:]\n"
        "from stages import cli\n"
        "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
        "print('MLX_IMPORTED', 'mlx.core' in sys.modules, 'TORCH', 'torch' in sys.modules, file=sys.stderr)"
    )
    env = dict(os.environ, LTX_CACHE=str(tmp / "cache"), HOME=str(tmp))
    rows = []
    for label, argv in (
        ("ltx --help", ["--help"]),
        ("ltx cache ls", ["cache", "ls"]),
        ("python -c pass (interpreter floor)", None),
        ("import mlx.core (for scale)", "mlx"),
    ):
        times, imported = [], "?"
        for i in range(a.runs + 1):
            if argv is None:
                cmd = [str(py("ours")), "-c", "pass"]
            elif argv == "mlx":
                cmd = [str(py("ours")), "-c", "import ltx.backend"]
            else:
                cmd = [str(py("ours")), "-c", code, *argv]
            t0 = time.perf_counter()
            p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
            dt = time.perf_counter() - t0
            if i:
                times.append(dt)
            if "MLX_IMPORTED" in p.stderr:
                imported = "no mlx import" if "MLX_IMPORTED False" in p.stderr else "IMPORTS MLX"
        rows.append(
            (
                f"startup: {label}",
                common.median(times),
                None,
                None,
                "s",
                imported if isinstance(argv, list) else "",
            )
        )
        print(
            f"  {label}: {common.median(times):.3f} s {imported if isinstance(argv, list) else ''}",
            flush=True,
        )
    return rows


def bench_micro(a, tmp: Path) -> list[tuple]:
    """What caps MLX's CPU backend: exp/softmax vs matmul at the attention's shapes, MLX vs torch."""
    args = ["--runs", str(a.runs), "--tokens", str(a.tokens)]
    ours = worker("ours", "micro.py", args)
    ref = worker("ref", "micro.py", args)
    rows = []
    if not ours:
        return rows
    for k, (t, flops) in ours["ops"].items():
        r = ref["ops"].get(k, (None, None))[0] if ref else None
        note = f"{flops / t / 1e9:.0f} GFLOP/s" if flops else f"{ours['elements'][k] / t / 1e6:.0f} M elem/s"
        if r and flops:
            note += f" (torch {flops / r / 1e9:.0f})"
        elif r:
            note += f" (torch {ours['elements'][k] / r / 1e6:.0f})"
        rows.append((f"micro: {k}", t, r, None, "s", note))
    return rows


def bench_transformer(a, tmp: Path) -> list[tuple]:
    cfg = common.transformer_config(a.layers, a.heads)
    inputs, weights = tmp / "tf_inputs.npz", tmp / "tf_weights.safetensors"
    prep = worker(
        "ours",
        "tf_prepare.py",
        [
            "--inputs",
            str(inputs),
            "--weights",
            str(weights),
            "--layers",
            str(a.layers),
            "--heads",
            str(a.heads),
            "--grid",
            a.grid,
        ],
    )
    if prep is None:
        return []
    tv, ta, s = prep["tokens"]
    args = [
        "--inputs",
        str(inputs),
        "--weights",
        str(weights),
        "--layers",
        str(a.layers),
        "--heads",
        str(a.heads),
    ]
    times: dict[str, list[float]] = {"ours": [], "ref": [], "port": []}
    outs = {name: tmp / f"tf_out_{name}.npz" for name in times}
    # ours and the reference in turn, one forward each, runs x rounds pairs
    jobs = {n: (f"tf_{n}.py", args + ["--save", str(outs[n])]) for n in ("ours", "ref")}
    res = interleaved(jobs, a.runs * a.rounds) or {}
    for name, r in res.items():
        times[name] = r["times"]
    if a.port:  # ~5x slower: its own runs, after
        port = worker("port", "tf_port.py", args + ["--runs", str(a.runs), "--save", str(outs["port"])])
        times["port"] = port["times"] if port else []
    outs = {name: path for name, path in outs.items() if times[name]}
    flops = common.transformer_flops(cfg, tv, ta, s)
    peak = worker("ours", "peak.py", ["--runs", str(a.runs)])  # after the forwards: same machine state
    med = {k: (common.median(v) if v else None) for k, v in times.items()}
    check = parity(outs)
    if times["ours"] and times["ref"]:
        pairs = sorted(o / r for o, r in zip(times["ours"], times["ref"], strict=True))
        check += (
            f"; ours/ref per interleaved pair: median {common.median(pairs):.2f},"
            f" range {pairs[0]:.2f}-{pairs[-1]:.2f} ({len(pairs)} pairs)"
        )
    label = f"transformer fwd ({a.layers} layers, {a.heads} heads, {tv}+{ta} tokens, {s} text), per layer"
    per = {k: (v / a.layers if v else None) for k, v in med.items()}
    rows = [(label, per["ours"], per["ref"], per["port"], "s/layer", check)]
    if peak:
        sources = ", ".join(f"{name} {g:.0f}" for name, g in peak["all"].items())
        rows.append(("machine float32 GEMM peak (4096^3 sgemm, every core)", peak["gflops"], None, None,
                     "GFLOP/s", f"bench/peak.py: {sources}"))  # fmt: skip
    for k in ("ours", "ref", "port"):
        if med[k]:
            g = flops / med[k] / 1e9
            share = f"{100 * g / peak['gflops']:.0f}% of the measured peak; " if peak else ""
            rows.append(
                (
                    f"transformer fwd: achieved GFLOP/s ({k})",
                    g,
                    None,
                    None,
                    "GFLOP/s",
                    f"{share}{flops / 1e9:.0f} GFLOP/fwd",
                )
            )
    return rows


CLI = (
    "import resource, sys, time\n"
    "sys.argv = ['ltx'] + sys.argv[1:]\n"
    "from stages import cli\n"
    "code = 0\n"
    "try:\n    cli.main()\nexcept SystemExit as e:\n    code = e.code or 0\n"
    "print('PEAK_RSS_MB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, file=sys.stderr)\n"
    "if 'mlx.core' in sys.modules:\n"
    "    print('MLX_PEAK_MB', sys.modules['mlx.core'].get_peak_memory() / 2**20, file=sys.stderr)\n"
    "sys.exit(code)"
)


def ltx_cli(args: list[str], cache: Path) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MB) and MLX's peak allocation (MB; nan when the command never imported
    MLX) of one `ltx ARGS` process (the console script's own code path)."""
    t0 = time.perf_counter()
    p = subprocess.run(
        [str(py("ours")), "-c", CLI, "--cache-dir", str(cache), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    dt = time.perf_counter() - t0
    if p.returncode:
        raise RuntimeError(f"ltx {' '.join(args)} failed (rc {p.returncode}):\n{p.stderr[-2000:]}")

    def last(tag: str) -> float:
        vals = [float(line.split()[1]) for line in p.stderr.splitlines() if line.startswith(tag)]
        return vals[-1] if vals else float("nan")

    return dt, last("PEAK_RSS_MB"), last("MLX_PEAK_MB")


def bench_generate(a, tmp: Path) -> list[tuple]:
    """The tiny model end to end: cold (empty cache), fully cached, re-decode only (new tiling), and the
    same decode with no cache or CLI around it (bench/decode_alone.py) for the re-decode's overhead."""
    prompt = ["--prompt", "A red fox trots through fresh snow at dawn"]
    times: dict[str, list[float]] = {"cold": [], "cached": [], "redecode": [], "decode alone": []}
    for i in range(a.runs):
        cache, out = tmp / f"gen-cache-{i}", tmp / f"gen-{i}.mp4"
        try:
            times["cold"].append(ltx_cli(["generate", "bench", *prompt, "--output-path", str(out)], cache)[0])
            times["cached"].append(
                ltx_cli(["generate", "bench", *prompt, "--output-path", str(out)], cache)[0]
            )
            times["redecode"].append(ltx_cli(["decode", "bench", "--tiling", "aggressive"], cache)[0])
        except RuntimeError as e:
            print(f"  {e}", flush=True)
            return []
        alone = decode_alone(cache, "bench")
        if alone is None:
            return []
        times["decode alone"].append(alone)
        print(
            f"  generate round {i}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True
        )
    med = {k: common.median(v) for k, v in times.items()}
    notes = {
        "cold": "empty cache",
        "cached": "every stage cached: no weights loaded",
        "redecode": "ltx decode --tiling aggressive on a cached run (process wall)",
        "decode alone": "the same decode, no cache or CLI: bench/decode_alone.py (process wall)",
    }
    rows = [(f"ltx generate (tiny model), {k}", med[k], None, None, "s", notes[k]) for k in times]
    rows.append(
        (
            "re-decode / decode alone",
            med["redecode"] / med["decode alone"],
            None,
            None,
            "x",
            "what resolving the run, verifying and reading the latents and publishing the frames add",
        )
    )
    return rows


def decode_alone(
    cache: Path, run: str, tiling: str = "aggressive", checkpoint: Path | None = None
) -> float | None:
    """Process wall of bench/decode_alone.py on a run's latents, less its reading them from the cache."""
    args = ["--cache", str(cache), "--run", run, "--tiling", tiling]
    t0 = time.perf_counter()
    res = worker("ours", "decode_alone.py", args + (["--checkpoint", str(checkpoint)] if checkpoint else []))
    return None if res is None else time.perf_counter() - t0 - res["read_s"]


def _redecode_vs_alone(
    cache: Path, run: str, what: str, runs: int, checkpoint: Path | None = None
) -> list[tuple]:
    """Medians of `runs` interleaved pairs: ltx decode --tiling aggressive --force on the run's saved
    latents, and bench/decode_alone.py on the same latents. Which of the two goes first alternates
    (ABBA), so that the machine's drift in speed does not favour either."""
    redecode, alone = [], []
    for i in range(runs):
        for side in ("redecode", "alone") if i % 2 == 0 else ("alone", "redecode"):
            if side == "redecode":
                redecode.append(ltx_cli(["decode", run, "--tiling", "aggressive", "--force"], cache)[0])
            else:
                alone.append(decode_alone(cache, run, checkpoint=checkpoint))
                if alone[-1] is None:
                    return []
    r, d = common.median(redecode), common.median(alone)
    pairs = [x / y for x, y in zip(redecode, alone, strict=True)]
    note = (
        f"ltx decode --tiling aggressive {r:.1f} s vs bench/decode_alone.py {d:.1f} s (medians of {runs}); "
        f"per pair: median {common.median(pairs):.2f}, range {min(pairs):.2f}-{max(pairs):.2f}"
    )
    return [(f"re-decode / decode alone, {what}", r / d, None, None, "x", note)]


def bench_memory(a, tmp: Path) -> list[tuple]:
    """Peak memory of `ltx decode` (streaming, default tiling: 64-frame temporal tiles, 24 overlap) for
    a video of three temporal tile groups and one of 4x its frames, 128x192 (tiny model): medians of
    --runs decodes of the same latents (--force), each in a fresh process."""
    rows, peaks = [], {}
    for frames in (129, 513):
        cache = tmp / f"mem-cache-{frames}"
        opts = ["--prompt", "a fox", "--num-frames", str(frames), "--height", "128", "--width", "192"]
        runs = []
        try:
            ltx_cli(["refine", f"mem{frames}", *opts], cache)  # everything upstream of decode
            for _ in range(a.runs):
                runs.append(ltx_cli(["decode", f"mem{frames}", "--tiling", "default", "--force"], cache))
        except RuntimeError as e:
            print(f"  {e}", flush=True)
            return rows
        dt, rss, mlx_peak = (common.median([r[i] for r in runs]) for i in range(3))
        peaks[frames] = rss, mlx_peak
        frames_mb = frames * 128 * 192 * 3 / 2**20
        spread = f"{min(r[1] for r in runs):.0f}-{max(r[1] for r in runs):.0f} MB over {len(runs)} runs"
        for what, value, note in (("peak RSS", rss, f"; {spread}"), ("MLX peak allocation", mlx_peak, "")):
            rows.append(
                (
                    f"streaming decode {what}, {frames} frames 128x192 (tiny model)",
                    value,
                    None,
                    None,
                    "MB",
                    f"{dt:.1f} s; the whole video as uint8 is {frames_mb:.0f} MB{note}",
                )
            )
        print(
            f"  {frames} frames: {rss:.0f} MB RSS ({spread}), {mlx_peak:.0f} MB MLX, {dt:.1f} s", flush=True
        )
        # two lengths: the per-process costs (imports, opening zarr arrays) are fixed, the decode is not
        rows += _redecode_vs_alone(cache, f"mem{frames}", f"{frames} frames 128x192", a.runs)
    for i, what in enumerate(("peak RSS", "MLX peak allocation")):
        ratio = peaks[513][i] / peaks[129][i]
        rows.append((f"streaming decode {what}, 513 / 129 frames", ratio, None, None, "x", "target <= 1.15"))
    return rows


def bench_redecode(a, tmp: Path) -> list[tuple]:
    """Re-decode against decode alone at the real decoder widths: the tiny model with a real-width video
    decoder (bench/realvae_model.py), 9 frames 256x384, where the decode costs what the real model's does
    and the CLI's and the cache's fixed costs weigh what they weigh in use."""
    decoder, model, cache = tmp / "realvae-decoder.safetensors", tmp / "realvae-model", tmp / "realvae-cache"
    if worker("ref", "vae_ref.py", ["--model", str(decoder), "--prepare"]) is None:
        return []
    if worker("ours", "realvae_model.py", ["--decoder", str(decoder), "--out", str(model)]) is None:
        return []
    opts = ["--prompt", "a fox", "--num-frames", "9", "--height", "256", "--width", "384"]
    try:
        ltx_cli(["refine", "realvae", *opts, "--model", str(model)], cache)  # everything upstream of decode
        return _redecode_vs_alone(
            cache, "realvae", "real decoder widths, 9 frames 256x384", a.runs, model / "model.safetensors"
        )
    except RuntimeError as e:
        print(f"  {e}", flush=True)
        return []


def bench_components(a, tmp: Path) -> list[tuple]:
    """Video VAE decode (untiled, tiled), upsampler, audio decoder, vocoder at real widths: bench/vae_bench.py
    (interleaved ours/reference, its own table), quoted into the results file."""
    out = tmp / "components.md"
    cmd = [str(py("ours")), str(BENCH / "vae_bench.py"), "--runs", str(a.runs), "--out", str(out), "--micro"]
    if a.quick:
        cmd.append("--quick")
    p = subprocess.run(
        cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True
    )
    print(p.stdout[-4000:], flush=True)
    if p.returncode or not out.exists():
        print(f"  vae_bench.py failed (rc {p.returncode}):\n{p.stderr[-3000:]}", flush=True)
        return []
    text = out.read_text()
    EXTRA.append(
        "## Components (bench/vae_bench.py)\n\n" + text.split("\n", 1)[1].lstrip()
        if text.startswith("#")
        else text
    )
    return []


def bench_vae(a, tmp: Path) -> list[tuple]:
    """Video VAE decode at the real widths (random weights), untiled and tiled, ours vs the reference."""
    model = tmp / "vae.safetensors"
    prep = worker("ref", "vae_ref.py", ["--model", str(model), "--prepare"])
    if prep is None:
        return []
    f, h, w = common.VAE_LATENT
    size = f"latent {f}x{h}x{w} -> {8 * (f - 1) + 1} frames {32 * h}x{32 * w}"
    rows = []
    for tiled in (False, True):
        extra = ["--tiled"] if tiled else []
        times: dict[str, list[float]] = {"ours": [], "ref": []}
        err = None
        for _ in range(a.rounds):
            r = worker("ref", "vae_ref.py", ["--model", str(model), "--runs", str(a.runs), *extra])
            o = worker("ours", "vae_ours.py", ["--model", str(model), "--runs", str(a.runs), *extra])
            times["ref"] += r["times"] if r else []
            times["ours"] += o["times"] if o else []
            err = o.get("err") if o else None
        mo, mr = common.median(times["ours"]), common.median(times["ref"])
        (st, so), (tt, to) = common.VAE_TILING
        label = f"video VAE decode, {'tiled ' + f'{st}/{so} px, {tt}/{to} frames' if tiled else 'untiled'} ({size})"
        note = f"{prep['flops'] / mo / 1e9:.0f} GFLOP/s ours" if mo == mo and not tiled else ""
        if err is not None:
            note += f"; max|ours-ref|/max|ref| {err:.1e}" if isinstance(err, float) else f"; {err}"
        rows.append(
            (label, mo if times["ours"] else None, mr if times["ref"] else None, None, "s", note.strip("; "))
        )
    return rows


def parity(outs: dict[str, Path]) -> str:
    import numpy as np

    if "ours" not in outs or "ref" not in outs:
        return ""
    o, r = np.load(outs["ours"]), np.load(outs["ref"])
    notes = []
    for k in ("video", "audio"):
        err = float(np.abs(o[k] - r[k]).max() / max(1e-12, np.abs(r[k]).max()))
        notes.append(f"{k} max|ours-ref|/max|ref| {err:.1e}")
    if "port" in outs:
        p = np.load(outs["port"])
        notes.append(
            f"port video {float(np.abs(p['video'] - r['video']).max() / np.abs(r['video']).max()):.1e}"
        )
    return "; ".join(notes)


# ----------------------------------------------------------------------------------------------


def fmt(x, unit):
    if x is None:
        return "–"
    return f"{x:.1f}" if unit == "GFLOP/s" else f"{x:.3g}"


def table(rows: list[tuple]) -> str:
    lines = [
        "| benchmark | ours | reference (torch) | MLX port | ours/ref | ours/port | unit | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, ours, ref, port, unit, note in rows:
        r1 = f"{ours / ref:.2f}" if ours and ref else "–"
        r2 = f"{ours / port:.2f}" if ours and port else "–"
        lines.append(
            f"| {label} | {fmt(ours, unit)} | {fmt(ref, unit)} | {fmt(port, unit)} | {r1} | {r2} | {unit} | {note} |"
        )
    return "\n".join(lines)


def compile_bytecode() -> str:
    """Byte-compile this project's modules, as an installed package is: with PYTHONDONTWRITEBYTECODE set
    (as on this machine) every process would otherwise compile ltx/, cache/ and stages/ from source again
    (~0.07 s of each CLI call). Python still reads .pyc files it is told not to write."""
    p = subprocess.run(
        [str(py("ours")), "-m", "compileall", "-q", "ltx", "cache", "stages", "bench"], cwd=ROOT
    )
    return "; modules byte-compiled first" if p.returncode == 0 else "; byte-compiling the modules failed"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated sections of {SECTIONS + OPTIONAL}"
    )
    ap.add_argument("--runs", type=int, default=3, help="timed runs per worker (after one warm-up)")
    ap.add_argument("--rounds", type=int, default=1, help="repeat the ours/ref/port sequence (interleaved)")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--grid", default="x".join(map(str, common.VIDEO_GRID)), help="video latent F x H x W")
    ap.add_argument("--tokens", type=int, default=6144, help="micro-benchmark video tokens")
    ap.add_argument("--no-port", dest="port", action="store_false", help="skip mlx-video-with-audio")
    ap.add_argument("--quick", action="store_true", help="small shapes, 1 run: a smoke test")
    ap.add_argument("--output", default=str(BENCH / "results.md"))
    a = ap.parse_args()
    if a.quick:
        a.grid, a.tokens, a.runs = "2x8x12", 1024, 1
        os.environ["LTX_BENCH_VAE_LATENT"] = "2x2x2"
    sections = [s for s in a.only.split(",") if s]
    if "transformer" in sections and a.port:
        a.port = ensure_port_venv()
    rows: list[tuple] = []
    started = time.strftime("%Y-%m-%d %H:%M")
    head = common.machine() + compile_bytecode()
    with tempfile.TemporaryDirectory(prefix="ltx-bench-") as tmp:
        for s in sections:
            print(f"== {s}", flush=True)
            rows += globals()[f"bench_{s}"](a, Path(tmp))
    md = table(rows)
    print(md)
    cmd = "python bench/run.py " + " ".join(sys.argv[1:])
    text = (
        f"# Benchmarks\n\nCommand: `{cmd.strip()}` ({started}; {head}).\n"
        f"Medians of {a.runs} timed runs x {a.rounds} round(s) after a warm-up; ratios < 1 mean ours is faster.\n\n"
        f"{md}\n" + "".join("\n" + e for e in EXTRA)
    )
    Path(a.output).write_text(text)
    print(f"wrote {a.output}")


if __name__ == "__main__":
    main()
