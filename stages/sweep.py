"""`ltx sweep`: the cross product of prompts, seeds and options given as lists, as one plan.

Every combination's graph is built first (stages/pipeline.py: keys known before anything runs, every
option checked), then nodes with equal keys are merged into one job (one encode for all seeds of a
prompt, one upsample per stage-1 result, ...). The jobs are run by stages/executors.py, upstream
first and model by model (every encode, then every denoise, ...); each combination's output file is
written from its mux artifact, and a table maps each combination to its output and keys.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import heapq
import io
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cache.store import Store
from stages import pipeline
from stages.executors import Job
from stages.framework import LtxError, Node
from stages.options import SEED_RANGE, Options

MAX_COMBINATIONS = 10_000
TABLE = "sweep.csv"


@dataclass(frozen=True)
class Dim:
    """One axis of the sweep: the Options field it sets and its values (as typed, and as written)."""

    name: str  # in file names and the table: prompt, seed, cfg-scale, lora1, ...
    field: str  # the Options field ("loras": the strength of LoRA `index`)
    values: tuple[Any, ...]
    tokens: tuple[str, ...]  # the values as the user wrote them (file names)
    index: int | None = None

    def label(self, i: int) -> str:
        if self.name == "prompt":
            return f"prompt{i + 1}"
        token = Path(self.tokens[i]).name if self.field == "model" else self.tokens[i]
        sep = "-" if self.name[-1].isdigit() else ""  # lora1-0.5, cfg-scale3
        return self.name + sep + re.sub(r"[^A-Za-z0-9.+-]", "-", token)


def parse_seeds(text: str) -> list[int]:
    """`1-8`, `1,2,5` or both (`1-4,10`): inclusive ranges and single seeds, each once."""
    out: list[int] = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m:
            raise LtxError(f"--seeds {text}: {part.strip()!r} is not a seed or range; use e.g. 1-8 or 1,2,5")
        lo, hi = int(m[1]), int(m[2] if m[2] is not None else m[1])
        if hi < lo:
            raise LtxError(f"--seeds {text}: the range {lo}-{hi} is empty; write LOW-HIGH with LOW <= HIGH")
        if hi >= SEED_RANGE:
            raise LtxError(f"--seeds {text}: {hi} is out of range; seeds go from 0 to {SEED_RANGE - 1}")
        if hi - lo >= MAX_COMBINATIONS:
            raise LtxError(f"--seeds {text}: more than {MAX_COMBINATIONS} seeds; sweep fewer at a time")
        out += range(lo, hi + 1)
    _unique("--seeds", text, out)
    return out


def parse_list(option: str, text: str, kind: type) -> tuple[list[Any], list[str]]:
    """A comma-separated list of values of `kind`: (values, tokens)."""
    tokens = [t.strip() for t in str(text).split(",")]
    values = []
    for t in tokens:
        try:
            values.append(kind(t) if t else None)
        except ValueError:
            values.append(None)
        if values[-1] is None:
            what = "number" if kind is float else "integer" if kind is int else "value"
            raise LtxError(f"{option} {text}: {t!r} is not a {what}; give a list like 2,3,4")
    _unique(option, text, values)
    return values, tokens


def _unique(option: str, text: str, values: list) -> None:
    seen = set()
    for v in values:
        if v in seen:
            raise LtxError(f"{option} {text} repeats {v}; give each value once")
        seen.add(v)


def read_prompts(prompts: list[str], file: Path | None) -> list[str]:
    """--prompt (repeatable) and --prompts FILE (one prompt a line; blank lines are skipped)."""
    out = [p for p in prompts]
    if file is not None:
        try:
            lines = Path(file).read_text().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            why = getattr(e, "strerror", None) or type(e).__name__
            raise LtxError(
                f"--prompts {file} cannot be read ({why}); give a text file, one prompt a line"
            ) from None
        from_file = [line.strip() for line in lines if line.strip()]
        if not from_file:
            raise LtxError(f"--prompts {file} has no prompts; write one prompt a line")
        out += from_file
    if not out:
        raise LtxError("ltx sweep needs a prompt: --prompt TEXT (repeatable) or --prompts FILE")
    for i, p in enumerate(out):
        if p.strip() in (q.strip() for q in out[:i]):
            raise LtxError(f"prompt {p.strip()[:40]!r} is given twice; give each prompt once")
    return out


@dataclass
class Combination:
    values: dict[str, Any]  # dimension name -> value
    picks: list[tuple[Dim, int]]  # each dimension and the index of its value
    options: Options
    nodes: dict[str, Node] = field(default_factory=dict)
    resolved: Options | None = None
    output: Path | None = None
    run: str = ""


def combinations(base: Options, dims: list[Dim]) -> list[Combination]:
    n = 1
    for d in dims:
        n *= len(d.values)
    if n > MAX_COMBINATIONS:
        raise LtxError(f"the sweep has {n} combinations, more than {MAX_COMBINATIONS}; sweep fewer at a time")
    out = []
    for picks in itertools.product(*(range(len(d.values)) for d in dims)):
        o = dataclasses.replace(base, loras=list(base.loras))
        values = {}
        for d, i in zip(dims, picks, strict=True):
            values[d.name] = v = d.values[i]
            if d.field == "loras":
                o.loras[d.index] = (o.loras[d.index][0], v)
            elif d.field == "distilled_lora":
                o.distilled_lora = (o.distilled_lora[0], v)
            else:
                setattr(o, d.field, v)
        out.append(Combination(values, list(zip(dims, picks, strict=True)), o))
    return out


def rebuild(options: Options, label: str, stream: bool, store: Store) -> Node:
    """The node `label` of a combination's graph, built where it runs (a Ray worker)."""
    nodes, _, _ = pipeline.build(options, store, preflight=False)
    node = nodes[label]
    if isinstance(node.runtime, dict) and "stream" in node.runtime:
        node.runtime["stream"] = stream
    return node


@dataclass
class Plan:
    combos: list[Combination]
    jobs: list[Job]  # one per distinct key, upstream first, stage by stage
    stage_runs: int  # nodes in all the combinations' graphs together

    @property
    def wanted(self) -> list[str]:
        return [c.nodes["mux"].key for c in self.combos]

    def summary(self) -> dict[str, int]:
        return {
            "combinations": len(self.combos),
            "stage_runs": self.stage_runs,
            "distinct": len(self.jobs),
            "saved": self.stage_runs - len(self.jobs),
        }


def _ordered(first: dict[str, tuple[int, int, Node]]) -> list[str]:
    """Keys upstream first; among those ready, by position in their pipeline (every encode before
    any denoise, ...: a process loads each model once), then in the order the combinations come."""
    deps = {k: {d for d in n.input_keys.values() if d in first} for k, (_, _, n) in first.items()}
    users: dict[str, list[str]] = {k: [] for k in first}
    for k, ds in deps.items():
        for d in ds:
            users[d].append(k)
    ready = [(first[k][0], first[k][1], k) for k, ds in deps.items() if not ds]
    heapq.heapify(ready)
    out = []
    while ready:
        *_, k = heapq.heappop(ready)
        out.append(k)
        for u in users[k]:
            deps[u].discard(k)
            if not deps[u]:
                heapq.heappush(ready, (first[u][0], first[u][1], u))
    return out


def plan(store: Store, base: Options, dims: list[Dim], out_dir: Path) -> Plan:
    """Every combination's graph (all checks run here, before anything is computed), merged by key."""
    combos = combinations(base, dims)
    first: dict[str, tuple[int, int, Node]] = {}  # key -> (position in its pipeline, order seen, node)
    specs: dict[str, functools.partial] = {}
    stage_runs = 0
    for c in combos:
        c.nodes, c.resolved, _ = pipeline.build(c.options, store)
        for pos, (label, node) in enumerate(c.nodes.items()):
            stage_runs += 1
            if node.key not in first:
                first[node.key] = (pos, len(first), node)
                stream = bool(isinstance(node.runtime, dict) and node.runtime.get("stream"))
                specs[node.key] = functools.partial(rebuild, c.options, label, stream)
    names = set()
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", out_dir.resolve().name).lstrip("._-") or "sweep"
    for c in combos:
        name = "_".join(
            f"seed{c.resolved.seed}" if d.name == "seed" else d.label(i)
            for d, i in c.picks
            if len(d.values) > 1 or d.name == "seed"
        )
        if name in names:  # two values that read the same in a file name (e.g. "a b" and "a-b")
            raise LtxError(
                f"two combinations would both write {name}.mp4; give values that differ in letters"
            )
        names.add(name)
        c.output = out_dir / f"{name}.mp4"
        c.run = f"{stem}.{name}"[:128]
    jobs = [Job(first[k][2], specs[k]) for k in _ordered(first)]
    return Plan(combos, jobs, stage_runs)


def table(p: Plan) -> str:
    """CSV: one row per combination: its output, run name, the values of every dimension, its keys."""
    names = list(dict.fromkeys(n for c in p.combos for n in c.values))
    labels = list(dict.fromkeys(label for c in p.combos for label in c.nodes))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["output", "run", *names, *(f"key_{label}" for label in labels)])
    for c in p.combos:
        resolved = {"prompt": c.resolved.prompt, "seed": c.resolved.seed}
        values = [resolved.get(n, c.values.get(n)) for n in names]
        keys = [c.nodes[label].key if label in c.nodes else "" for label in labels]
        w.writerow([str(c.output), c.run, *values, *keys])
    return buf.getvalue()


def write_outputs(store: Store, p: Plan) -> list[Path]:
    """Each combination's .mp4 from its committed mux artifact (those that finished)."""
    from stages import mux

    written = []
    for c in p.combos:
        key = c.nodes["mux"].key
        if store.exists(key):
            mux.write_output(store.open(key)["mp4"].tobytes(), c.output)
            written.append(c.output)
    return written
