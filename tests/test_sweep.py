"""`ltx sweep`: a cross product of prompts, seeds and listed options, merged by key, run in this process
or on Ray (one local cluster, `ray.init(num_cpus=2)`, shared by this module's tests).

Every sweep's files are compared byte for byte with sequential `ltx generate` runs of the same
combinations (made once, in their own cache). Stage runs are counted from the sweep's JSON events
(each says whether the stage was computed, as the worker that ran it reported) and from the store.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import toy_stages as toy
from test_bad_inputs import run_cli

from cache.store import Store
from stages import executors
from stages.framework import LtxError, Node

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--height", "64", "--width", "128", "--num-frames", "9"]
PROMPTS = ("a red fox trots through fresh snow", "a heron stands in a misty lake")
SEEDS = (1, 2, 3)
STAGES = ("encode", "denoise", "upsample", "refine", "decode", "decode_audio", "vocode", "mux")
ALL_RUNS = {"encode": 2, **{s: 6 for s in STAGES[1:]}}  # 2 prompts x 3 seeds, merged


def _cli(argv: list[str], capsys) -> tuple[int, list[dict], str]:
    """`ltx ARGV` in this process: exit code, JSON events (with --json), stderr."""
    rc = run_cli(argv)
    out, err = capsys.readouterr()
    return rc, [json.loads(line) for line in out.splitlines() if line.startswith("{")], err


def _sweep_args(cache: Path, out: Path, prompts=PROMPTS, seeds="1-3", *extra: str) -> list[str]:
    args = ["--cache-dir", str(cache), "sweep", "--seeds", seeds, *SMALL, "--output-path", str(out), "--json"]
    for p in prompts:
        args += ["--prompt", p]
    return args + list(extra)


def _ran(events: list[dict]) -> Counter:
    return Counter(e["stage"] for e in events if e["event"] == "end" and not e["cached"])


def _stages_in(cache: Path | str) -> Counter:
    store = Store(cache)
    return Counter(store.manifest(k)["stage"] for k in store.keys())


@pytest.fixture(scope="module")
def references(tmp_path_factory) -> dict[str, tuple[bytes, dict]]:
    """Sequential `ltx generate` runs of every combination: file name -> (mp4 bytes, keys)."""
    from stages import api

    root = tmp_path_factory.mktemp("generate")
    out = {}
    for i, prompt in enumerate(PROMPTS):
        for seed in SEEDS:
            path = root / f"prompt{i + 1}_seed{seed}.mp4"
            r = api.generate(
                prompt=prompt,
                seed=seed,
                height=64,
                width=128,
                num_frames=9,
                output_path=path,
                no_preview=True,
                cache_dir=root / "cache",
            )
            out[path.name] = (path.read_bytes(), r.keys)
    return out


@pytest.fixture(scope="module")
def ray_address():
    """One local Ray cluster (2 CPUs) for the module; workers import this tree and the toy stages. It
    listens on this machine only, without Ray's token authentication: a token would live in the
    home directory's ~/.ray, shared with every other Ray on the machine."""
    import ray

    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"  # the drivers started by the tests inherit it
    path = os.pathsep.join([str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved


def _check_outputs(out: Path, references: dict, names: dict[str, str] | None = None) -> None:
    """The sweep's files (and its table's keys) are the reference runs': `names` maps a sweep's file
    name to the reference's (all of them by default)."""
    names = names or {n: n for n in references}
    assert sorted(p.name for p in out.glob("*.mp4")) == sorted(names)
    for name, ref in names.items():
        assert (out / name).read_bytes() == references[ref][0], name
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert sorted(Path(r["output"]).name for r in rows) == sorted(names)
    for r in rows:
        ref_keys = references[names[Path(r["output"]).name]][1]
        assert {s: r[f"key_{s}"] for s in STAGES} == {s: ref_keys[s] for s in STAGES}
        assert r["prompt"] in PROMPTS and int(r["seed"]) in SEEDS


def _check_sweep(tmp_path: Path, capsys, references: dict, *executor: str) -> None:
    cache, out = tmp_path / "cache", tmp_path / "sweep"
    rc, events, err = _cli(_sweep_args(cache, out, PROMPTS, "1-3", *executor), capsys)
    assert rc == 0, err
    (plan,) = [e for e in events if e["event"] == "sweep"]
    assert plan == {
        "event": "sweep",
        "combinations": 6,
        "stage_runs": 48,
        "distinct": 44,
        "saved": 4,  # one encode per prompt instead of one per seed
        "cached": 0,
        "to_run": 44,
    }
    assert _ran(events) == ALL_RUNS
    assert _stages_in(cache) == ALL_RUNS  # and nothing else (no checkpoint left behind)
    _check_outputs(out, references)
    # the same sweep again: every output is committed, nothing upstream of it is even opened
    rc, events, err = _cli(_sweep_args(cache, out, PROMPTS, "1-3", *executor), capsys)
    assert rc == 0, err
    (plan,) = [e for e in events if e["event"] == "sweep"]
    assert (plan["cached"], plan["to_run"]) == (6, 0)
    assert _ran(events) == {}
    _check_outputs(out, references)


def test_sweep_in_process(tmp_path, capsys, references):
    _check_sweep(tmp_path, capsys, references)


def test_sweep_on_ray(tmp_path, capsys, references, ray_address):
    _check_sweep(tmp_path, capsys, references, "--executor", "ray")


@pytest.mark.parametrize("where", ["local", "ray-bucket"])
def test_killed_driver_resumes(where, tmp_path, capsys, references, request):
    """SIGKILL the driver once a denoise is committed (the next stage is running), rerun: nothing that
    was committed is computed again, and the files are those of `ltx generate`. On Ray this is the
    README's command: `ltx --cache-dir s3://... sweep --prompts FILE --executor ray --address auto`
    (moto's S3 server on localhost; the driver passes the AWS variables on to the tasks)."""
    env = {k: v for k, v in os.environ.items() if k not in ("LTX_CACHE", "LTX_MODEL", "LTX_DEBUG")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    out = tmp_path / "seeds"
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(PROMPTS[0] + "\n")
    if where == "local":
        cache = str(tmp_path / "cache")
        args = _sweep_args(Path(cache), out, PROMPTS[:1], "1-2")
    else:
        cache = request.getfixturevalue("s3_url")  # sets the AWS variables here (and so in env below)
        env = {**env, **{k: v for k, v in os.environ.items() if k.startswith(("AWS_", "LTX_"))}}
        env["RAY_ADDRESS"] = request.getfixturevalue("ray_address")
        args = ["--cache-dir", cache, "sweep", "--prompts", str(prompts), "--seeds", "1-2", *SMALL]
        args += ["--executor", "ray", "--address", "auto", "--output-path", str(out), "--json"]
    with open(tmp_path / "stderr", "w") as err:
        p = subprocess.Popen(
            [sys.executable, "-m", "stages.cli", *args],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
        )
        for line in p.stdout:
            e = json.loads(line)
            if e["event"] == "end" and e["stage"] == "denoise" and not e["cached"]:
                p.send_signal(signal.SIGKILL)
                break
        p.stdout.close()
        assert p.wait(timeout=300) == -signal.SIGKILL, (tmp_path / "stderr").read_text()
    store = Store(cache)
    done = {k for k in store.keys() if "checkpoint_of" not in store.manifest(k)}
    assert {store.manifest(k)["stage"] for k in done} >= {"encode", "denoise"}
    rc, events, err = _cli(args, capsys)
    assert rc == 0, err
    ran = {e["key"] for e in events if e["event"] == "end" and not e["cached"]}
    assert ran and not ran & done, "a committed stage was computed again"
    assert _stages_in(cache) == {"encode": 1, **{s: 2 for s in STAGES[1:]}}
    assert sorted(store.runs()) == ["seeds.seed1", "seeds.seed2"]
    _check_outputs(out, references, {f"seed{s}.mp4": f"prompt1_seed{s}.mp4" for s in (1, 2)})


def test_plan_merges_equal_keys(tmp_path, capsys):
    """--dry-run: the plan of a tiling x seed sweep (one upsample per stage-1 result) and a guidance x
    LoRA-strength sweep on the dev pipeline (one encode, one negative encode); nothing is written (but
    the LoRA file's memoised digest)."""
    from ltx.weights import tiny

    lora = tmp_path / "tiny" / "distilled_lora.safetensors"
    tiny.create("2.0", tmp_path / "tiny")
    cache, out = tmp_path / "cache", tmp_path / "sweep"
    rc, events, err = _cli(
        _sweep_args(cache, out, PROMPTS[:1], "1,2", "--tiling", "none,aggressive", "--dry-run"), capsys
    )
    assert rc == 0, err
    plan, *combos = events
    assert (plan["stage_runs"], plan["distinct"], plan["saved"]) == (32, 19, 13)
    names = [Path(c["output"]).name for c in combos]
    assert names == [f"seed{s}_tiling{t}.mp4" for s in (1, 2) for t in ("none", "aggressive")]
    for label, distinct in (("encode", 1), ("upsample", 2), ("refine", 2), ("decode", 4), ("vocode", 2)):
        assert len({c["keys"][label] for c in combos}) == distinct, label
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n\n")
    argv = ["--cache-dir", str(cache), "sweep", "--prompts", str(prompts), "--seeds", "5", *SMALL]
    argv += ["--pipeline", "dev", "--steps", "2", "--cfg-scale", "2,3", "--lora", str(lora), "0.5,1.0"]
    rc, events, err = _cli([*argv, "--output-path", str(out), "--dry-run", "--json"], capsys)
    assert rc == 0, err
    plan, *combos = events
    assert (plan["combinations"], plan["stage_runs"], plan["distinct"]) == (8, 56, 43)
    assert [Path(c["output"]).name for c in combos] == [
        f"prompt{p}_seed5_cfg-scale{c}_lora1-{s}.mp4" for p in (1, 2) for c in (2, 3) for s in ("0.5", "1.0")
    ]
    assert [c["values"]["prompt"] for c in combos] == [p for p in PROMPTS for _ in range(4)]
    assert len({c["keys"]["denoise"] for c in combos}) == 8
    assert len({c["keys"]["encode"] for c in combos}) == 2
    assert len({c["keys"]["encode_negative"] for c in combos}) == 1
    assert not out.exists() and not (cache / "objects").exists() and not (cache / "runs").exists()


def test_ray_retries_failed_tasks(tmp_path, ray_address):
    """A task whose worker dies, then one that hits an I/O error, is tried again and commits; a bad
    input (any other exception) is not retried, and the failure is one line naming the stage."""
    store = Store(tmp_path / "cache")
    make = Node(toy.MAKE, toy.MakeParams(seed=3))
    log = tmp_path / "calls"
    flaky = Node(toy.FLAKY, toy.FlakyParams(str(log), ("exit", "eio", "ok")), {"x": make})
    todo, cached = executors.pending(store, [executors.Job(make), executors.Job(flaky)], [flaky.key])
    assert [j.key for j in todo] == [make.key, flaky.key] and cached == []
    report = executors.run_ray(str(store.root), todo, cached, retries=2)
    assert report.runs() == {"make": 1, "flaky": 1} and not report.failed
    assert len(log.read_text().splitlines()) == 3
    np.testing.assert_array_equal(store.open(flaky.key)["y"], store.open(make.key)["x"] + 1)

    log2 = tmp_path / "calls2"
    bad = Node(toy.FLAKY, toy.FlakyParams(str(log2), ("fail",)), {"x": make})
    todo, cached = executors.pending(store, [executors.Job(make), executors.Job(bad)], [bad.key])
    report = executors.run_ray(str(store.root), todo, cached, retries=2)
    assert report.cached == {make.key: "make"} and list(report.failed) == [bad.key]
    assert len(log2.read_text().splitlines()) == 1
    with pytest.raises(LtxError) as e:
        report.raise_failures()
    assert "flaky" in str(e.value) and "boom" in str(e.value) and "\n" not in str(e.value)
    assert not store.exists(bad.key)

    # a worker that makes another key for a node (other model files there) refuses to compute it
    other = Node(toy.MAKE, toy.MakeParams(seed=4))
    job = executors.Job(Node(toy.MAKE, toy.MakeParams(seed=5)), functools.partial(executors._given, other))
    report = executors.run_ray(str(store.root), [job], retries=2)
    assert "not the driver's" in report.failed[job.key][1] and not store.exists(other.key)


def test_resource_hints():
    cpu_only, gpus = {"cpus": 8.0, "gpus": 0}, {"cpus": 8.0, "gpus": 2}
    assert executors.resources("mux", cpu_only) == executors.resources("mux", gpus) == {"num_cpus": 1}
    assert executors.resources("denoise", cpu_only) == {"num_cpus": 8.0}  # a whole machine (a Mac)
    assert executors.resources("denoise", gpus) == {"num_cpus": 1, "num_gpus": 1}
