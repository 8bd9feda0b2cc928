"""The stage framework: how a pipeline step becomes a cached, resumable artifact.

A `Stage` is a name, an integer version, a frozen `Params` dataclass holding exactly what changes
its output bits, the names of its upstream artifacts, and `compute(ctx, params, **inputs)` that
returns named arrays. A `Node` is one application of a stage: its key follows from the recipe
alone, so a whole pipeline's keys are known before anything runs, and `ensure` computes only
what is missing (demand-driven, like make).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cache.errors import CacheError, CorruptArtifact, UnknownArtifact
from cache.keys import make_key
from cache.store import Artifact, RowWriter, Store, Writer
from stages import progress as _progress


class LtxError(Exception):
    """A user-facing error: the CLI prints its message as one line and exits 1."""


def _versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for dist in ("ltx-mlx", "mlx", "zarr", "numpy"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


@dataclass(frozen=True)
class Stage:
    """`inputs` names the upstream artifacts; a trailing '?' marks an optional one."""

    name: str
    version: int
    params: type
    inputs: tuple[str, ...]
    compute: Callable[..., dict[str, Any]]
    doc: str = ""


@dataclass
class Node:
    """One application of a stage: params, upstream nodes (or known keys) and external digests."""

    stage: Stage
    params: Any
    inputs: dict[str, Node | str] = field(default_factory=dict)
    externals: dict[str, str] = field(default_factory=dict)
    runtime: Any = (
        None  # what compute needs but the key does not (e.g. model file paths; their digests are externals)
    )

    def __post_init__(self) -> None:
        required = {n for n in self.stage.inputs if not n.endswith("?")}
        allowed = {n.rstrip("?") for n in self.stage.inputs}
        missing = required - set(self.inputs)
        extra = set(self.inputs) - allowed
        if missing or extra:
            raise ValueError(
                f"stage {self.stage.name}: inputs {sorted(missing)} missing, {sorted(extra)} unexpected"
            )

    @property
    def input_keys(self) -> dict[str, str]:
        return {n: (i.key if isinstance(i, Node) else i) for n, i in self.inputs.items()}

    @property
    def key(self) -> str:
        return make_key(
            self.stage.name,
            self.stage.version,
            dataclasses.asdict(self.params),
            self.input_keys,
            self.externals,
        )


class Context:
    """What a compute function may use besides its inputs: checkpoints, streamed outputs, progress."""

    def __init__(
        self,
        store: Store,
        node: Node,
        writer: Writer,
        echo: Callable[[str], None],
        reporter: _progress.Reporter | None = None,
    ):
        self.store, self.node, self.key, self._writer = store, node, node.key, writer
        self._reporter = reporter or _progress.Reporter(echo)
        self.echo = self._reporter.message
        self.runtime = node.runtime
        self._checkpoints: set[str] = set()

    def _checkpoint_key(self, step: int) -> str:
        return make_key(
            f"{self.node.stage.name}.checkpoint", self.node.stage.version, {"step": step}, {"of": self.key}
        )

    def checkpoint(self, step: int, arrays: dict[str, Any]) -> None:
        """Publish the state after `step` as its own artifact, keyed by this stage's key and the step."""
        key = self._checkpoint_key(step)
        self._checkpoints.add(key)
        if self.store.exists(key):
            return
        with self.store.writer(
            key,
            {
                "stage": f"{self.node.stage.name}.checkpoint",
                "step": step,
                "checkpoint_of": self.key,
                "inputs": {"of": self.key},
            },
        ) as w:
            for name, a in arrays.items():
                w.put(name, a)
            w.commit(created=datetime.now(UTC).isoformat())
        # the previous step's checkpoint is superseded
        if step > 1:
            self.store.remove(self._checkpoint_key(step - 1))

    def resume(self, total_steps: int) -> tuple[int, dict[str, Any]] | None:
        """The latest intact checkpoint of this stage, if any: (step, its arrays). The arrays are read
        into memory (and verified) here: a concurrent run of the same stage removes each checkpoint
        as its next one is published, and all of them once it finishes."""
        for step in range(total_steps, 0, -1):
            key = self._checkpoint_key(step)
            if not self.store.exists(key):
                continue
            try:
                arrays = self.store.open(key, verify=False).load()
                self._checkpoints.add(key)
                return step, arrays
            except CorruptArtifact as e:
                self.echo(f"discarding corrupt checkpoint of {self.node.stage.name} at step {step}: {e}")
                self.store.remove(key)
            except CacheError:
                continue  # removed by a concurrent writer or gc since the check: look further back
        return None

    def _clear_checkpoints(self) -> None:
        """Called once the final artifact is published: its checkpoints are then garbage."""
        for key in self._checkpoints:
            self.store.remove(key)

    def progress(self, done: int, total: int | None = None, unit: str = "step") -> None:
        """`done` of `total` units of this stage's loop: the first call is the baseline (report it before
        the loop, with the units already done, e.g. resumed steps); rates and ETAs are measured from it."""
        self._reporter.progress(self.node.stage.name, self.key, done, total, unit)

    def output(self, name: str, shape: tuple[int, ...], dtype: Any) -> RowWriter:
        """Stream a large output into the artifact block by block (along axis 0)."""
        return self._writer.create(name, shape, dtype)


def ensure(
    store: Store,
    node: Node,
    *,
    force: bool = False,
    echo: Callable[[str], None] = print,
    _done: dict[str, Artifact] | None = None,
) -> Artifact:
    """The artifact of `node`: from the store if present and intact, else computed (inputs first) and published."""
    done = {} if _done is None else _done
    key = node.key
    if key in done:
        return done[key]
    rep = _progress.reporter(echo)
    if store.exists(key) and not force:
        try:
            t0 = time.perf_counter()
            art = store.open(key, verify=os.environ.get("LTX_VERIFY", "full") != "lazy")
            rep.cached(node.stage.name, key, time.perf_counter() - t0)
            done[key] = art
            return art
        except CorruptArtifact as e:
            rep.message(f"corrupt {node.stage.name} {key[:8]} ({e}); removing and recomputing")
            store.remove(key)
        except UnknownArtifact:
            pass  # removed since the check (cache rm, gc): compute it
    upstream = {}
    for name, inp in node.inputs.items():
        if isinstance(inp, Node):
            upstream[name] = ensure(store, inp, echo=echo, _done=done)
        else:
            upstream[name] = store.open(inp, verify=True)
    done[key] = art = run(store, node, upstream, echo=echo)
    return art


def run(
    store: Store, node: Node, upstream: dict[str, Artifact], echo: Callable[[str], None] = print
) -> Artifact:
    """Compute `node` from its upstream artifacts and publish the result atomically."""
    key, stage = node.key, node.stage
    manifest = {
        "stage": stage.name,
        "version": stage.version,
        "params": dataclasses.asdict(node.params),
        "inputs": node.input_keys,
        "externals": dict(node.externals),
        "versions": _versions(),
    }
    rep = _progress.reporter(echo)
    rep.start(stage.name, key)
    t0 = time.perf_counter()
    with store.writer(key, manifest) as writer:
        ctx = Context(store, node, writer, echo, rep)
        arrays = stage.compute(ctx, node.params, **upstream) or {}
        for name, value in arrays.items():
            writer.put(name, value)
        dt = time.perf_counter() - t0
        art = writer.commit(created=datetime.now(UTC).isoformat(), duration_s=round(dt, 3))
    ctx._clear_checkpoints()
    rep.end(stage.name, key, dt)
    return art
