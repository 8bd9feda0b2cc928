"""Running many stage nodes in dependency order: in this process, or one Ray task per node.

A plan is a list of `Job`s (one per distinct key, upstream first). Both executors run only what is
not committed in the store; a node whose artifact appears meanwhile (another machine, a killed
driver's last task) is found and not recomputed. Ray does the scheduling: each task names its
upstream tasks' results as arguments, so it starts once those are committed, with resource hints per
stage and retries of failed tasks. Ray is imported only by `run_ray` (an optional dependency).
"""

from __future__ import annotations

import functools
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cache.errors import CorruptArtifact, PublishError, UnknownArtifact
from cache.store import Artifact, Store
from stages import progress
from stages.framework import LtxError, Node, run

# Stages that need no model: a CPU each. Every other stage loads a model and gets a whole machine
# (its accelerator, or all of a Mac's cores and unified memory) so two never share one.
LIGHT_STAGES = frozenset({"mux"})
# Failures worth another try: I/O (an object store's network, a full disk freed meanwhile). A task
# whose worker process or machine dies is retried by Ray anyway; a bad input (LtxError) is not.
RETRY_ON = (OSError, PublishError)


def _given(node: Node, store: Store) -> Node:
    return node


@dataclass
class Job:
    """One distinct node of a plan. `spec(store)` makes the node in a Ray worker (default: this node
    with its inputs as keys, shipped as is); a pipeline node is rebuilt there from its options, so
    that the worker's own model files are used (their digests are in the key, their paths are not)."""

    node: Node
    spec: Callable[[Store], Node] | None = None

    @property
    def key(self) -> str:
        return self.node.key

    @property
    def stage(self) -> str:
        return self.node.stage.name

    @property
    def deps(self) -> list[str]:
        return list(dict.fromkeys(self.node.input_keys.values()))

    def shipped(self) -> Callable[[Store], Node]:
        if self.spec is not None:
            return self.spec
        n = self.node
        return functools.partial(_given, Node(n.stage, n.params, n.input_keys, n.externals, n.runtime))


@dataclass
class Report:
    """What an executor did: per key, the stage and (for ran) seconds and host."""

    ran: dict[str, tuple[str, float, str]] = field(default_factory=dict)
    cached: dict[str, str] = field(default_factory=dict)
    failed: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (stage, message)
    skipped: dict[str, str] = field(default_factory=dict)  # not run: an upstream stage failed

    def runs(self) -> dict[str, int]:
        """Stage name -> how many of its nodes were computed."""
        out: dict[str, int] = {}
        for stage, _, _ in self.ran.values():
            out[stage] = out.get(stage, 0) + 1
        return out

    def raise_failures(self) -> None:
        if not self.failed:
            return
        key, (stage, msg) = next(iter(self.failed.items()))
        more = f" (and {len(self.failed) - 1} more)" if len(self.failed) > 1 else ""
        skipped = f", {len(self.skipped)} waiting on it not run" if self.skipped else ""
        raise LtxError(
            f"{stage} {key[:8]} failed: {msg}{more}{skipped}; {len(self.ran) + len(self.cached)} finished "
            "stages are kept in the cache: rerun the same command to resume"
        )


def committed(store: Store, key: str) -> bool:
    """Whether `key` is published and usable: intact unless LTX_VERIFY=lazy; a corrupt one is removed."""
    if not store.exists(key):
        return False
    try:
        store.open(key, verify=os.environ.get("LTX_VERIFY", "full") != "lazy")
        return True
    except CorruptArtifact as e:
        progress.reporter().message(f"corrupt {key[:8]} ({e}); removing and recomputing")
        store.remove(key)
    except UnknownArtifact:
        pass
    return False


def pending(store: Store, jobs: list[Job], wanted: list[str]) -> tuple[list[Job], list[Job]]:
    """(to run, cached): the jobs the `wanted` keys need, demand-driven as make: a committed node is
    used as it is and nothing upstream of it is needed for it. Both lists keep the plan's order."""
    by_key = {j.key: j for j in jobs}
    run_keys, cached_keys = set(), set()
    stack = list(dict.fromkeys(wanted))
    while stack:
        key = stack.pop()
        if key in run_keys or key in cached_keys or key not in by_key:
            continue  # an input given by key (not a job of this plan) must already be committed
        if committed(store, key):
            cached_keys.add(key)
        else:
            run_keys.add(key)
            stack += by_key[key].deps
    return [j for j in jobs if j.key in run_keys], [j for j in jobs if j.key in cached_keys]


def run_node(
    store: Store, node: Node, upstream: dict[str, Artifact] | None = None
) -> tuple[Artifact | None, float | None]:
    """Commit `node` unless it already is: (its artifact and the seconds it took), or (None, None) if
    it was found committed. `upstream`: artifacts already open (key -> artifact), else read by key."""
    if committed(store, node.key):
        return None, None
    inputs = {}
    for name, key in node.input_keys.items():
        inputs[name] = (upstream or {}).get(key) or store.open(key, verify=True)
    t0 = time.perf_counter()
    art = run(store, node, inputs, echo=progress.reporter().message)
    return art, time.perf_counter() - t0


class _Progress:
    """The whole sweep's progress (`sweep: stage 3/40`), beside each stage's own lines."""

    def __init__(self, total: int, cached: list[Job]):
        self.rep, self.total, self.done = progress.reporter(), total, 0
        for j in cached:
            self.rep.cached(j.stage, j.key, 0.0)
        self.rep.progress("sweep", "all", 0, total, "stage")

    def ran(self, job: Job, seconds: float | None, via_task: bool) -> None:
        if seconds is None:
            self.rep.cached(job.stage, job.key, 0.0)
        elif via_task:  # in this process framework.run reported it already
            self.rep.end(job.stage, job.key, seconds)
        self.step()

    def step(self) -> None:
        self.done += 1
        self.rep.progress("sweep", "all", self.done, self.total, "stage")


def run_local(store: Store, todo: list[Job], cached: list[Job] = ()) -> Report:
    """The jobs `todo` (from `pending`: upstream first), one after another in this process."""
    report = Report(cached={j.key: j.stage for j in cached})
    bar = _Progress(len(todo), cached)
    done: dict[str, Artifact] = {}  # computed here: their consumers need not read them back
    for job in todo:
        art, seconds = run_node(store, job.node, done)
        if art is None:
            report.cached[job.key] = job.stage
        else:
            done[job.key] = art
            report.ran[job.key] = (job.stage, seconds, platform.node())
        bar.ran(job, seconds, via_task=False)
    return report


# ---- Ray --------------------------------------------------------------------------------------------
def _task(root: str, spec: Callable[[Store], Node], key: str, *_upstream: Any) -> dict[str, Any]:
    """One node on a Ray worker. `_upstream`: the results of the tasks it waits for (Ray passes them
    once they finished, i.e. once their artifacts are committed); the inputs are read from the store."""
    import ltx.backend  # noqa: F401  (before anything imports mlx: it sets up the BLAS)
    from stages import commands

    store = Store(root)
    commands._scratch_in_cache(store)  # temporary files (ffmpeg's) under the cache's own folder
    node = spec(store)
    if node.key != key:
        raise LtxError(
            f"{node.stage.name} on {platform.node()} has key {node.key[:8]}, not the driver's {key[:8]}: "
            "its model files or ltx-mlx version differ from the driver's machine"
        )
    _, seconds = run_node(store, node)
    return {"key": key, "seconds": seconds, "host": platform.node(), "pid": os.getpid()}


def cluster_shape() -> dict[str, float]:
    """The smallest alive node's CPUs and the cluster's GPUs (what resource hints are made from)."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    cpus = [c for n in nodes if (c := n["Resources"].get("CPU", 0)) > 0] or [1]  # a head may have none
    gpus = sum(n["Resources"].get("GPU", 0) for n in nodes)
    return {"cpus": max(1.0, min(cpus)), "gpus": gpus}


def resources(stage: str, shape: dict[str, float]) -> dict[str, float]:
    """Ray resource requests of one stage's task."""
    if stage in LIGHT_STAGES:
        return {"num_cpus": 1}
    if shape["gpus"] >= 1:
        return {"num_cpus": 1, "num_gpus": 1}
    return {"num_cpus": shape["cpus"]}


def _env() -> dict[str, str]:
    """What the workers must share with the driver: the settings that change the bits (dtype, GEMM),
    verification, and how to reach the store (an object store's AWS variables)."""
    return {k: v for k, v in os.environ.items() if k.startswith(("LTX_", "AWS_"))}


def connect(address: str | None) -> bool:
    """Join the Ray cluster at `address` ("auto": the one running here), or start a local one. True if
    this call started (and the caller must shut down) Ray in this process."""
    import logging

    import ray

    if ray.is_initialized():
        return False
    kw: dict[str, Any] = dict(
        log_to_driver=False,  # the driver reports each stage; the workers' lines stay in Ray's logs
        logging_level=logging.WARNING,
    )
    if address is None:
        kw.update(address="local", include_dashboard=False)
    else:
        kw.update(address=address)
    try:
        ray.init(**kw)
    except ConnectionError as e:
        raise LtxError(
            f"--address {address}: no Ray cluster there ({e}); start one with `ray start --head`"
        ) from None
    return True


def _cause(e: BaseException) -> str:
    cause = getattr(e, "cause", None) or e
    return str(cause).strip().splitlines()[-1] if str(cause).strip() else type(cause).__name__


def run_ray(
    root: str,
    todo: list[Job],
    cached: list[Job] = (),
    *,
    address: str | None = None,
    retries: int = 2,
) -> Report:
    """The jobs `todo` (from `pending`: upstream first), one Ray task each; `root` is the store every
    worker opens (a path all machines see, or an object store's URL)."""
    report = Report(cached={j.key: j.stage for j in cached})
    if not todo:
        _Progress(0, cached)
        return report
    import ray

    owned = connect(address)
    refs: dict[str, Any] = {}
    try:
        shape = cluster_shape()
        remote = ray.remote(_task)
        env = {"env_vars": _env()}  # per task: also when this process had joined Ray before
        for job in todo:  # upstream first: each task names its upstream tasks' results
            deps = [refs[d] for d in job.deps if d in refs]
            opts = dict(
                resources(job.stage, shape),
                max_retries=retries,
                retry_exceptions=list(RETRY_ON) if retries else False,
                name=f"{job.stage}-{job.key[:8]}",
                runtime_env=env,
            )
            refs[job.key] = remote.options(**opts).remote(root, job.shipped(), job.key, *deps)
        by_ref = {ref: job for job, ref in zip(todo, refs.values(), strict=True)}
        bar = _Progress(len(todo), cached)
        waiting = list(refs.values())
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1)
            job = by_ref[ready[0]]
            try:
                out = ray.get(ready[0])
            except ray.exceptions.RayError as e:
                if any(d in report.failed or d in report.skipped for d in job.deps):
                    report.skipped[job.key] = job.stage
                else:
                    report.failed[job.key] = (job.stage, _cause(e))
                    bar.rep.message(f"failed {job.stage} {job.key[:8]}: {_cause(e)}")
                bar.step()
                continue
            if out["seconds"] is None:
                report.cached[job.key] = job.stage
            else:
                report.ran[job.key] = (job.stage, out["seconds"], out["host"])
            bar.ran(job, out["seconds"], via_task=True)
    except KeyboardInterrupt:
        if not owned:  # a cluster we only joined: stop this sweep's tasks there (ours die with Ray)
            for ref in refs.values():
                ray.cancel(ref, force=True)
        raise
    finally:
        if owned:
            ray.shutdown()
    return report
