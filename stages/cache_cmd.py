"""`ltx cache ls|show|verify|gc|rm`: inspect and maintain the artifact cache."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer

from cache.errors import CacheError
from cache.store import Store
from stages.framework import LtxError
from stages.session import State

app = typer.Typer(help="Inspect and maintain the artifact cache.", no_args_is_help=True)


def _age(seconds: float) -> str:
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= n:
            return f"{seconds / n:.0f}{unit}"
    return f"{seconds:.0f}s"


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _names_by_key(store: Store) -> dict[str, str]:
    out: dict[str, str] = {}
    for run, info in store.runs().items():
        for stage, key in info.get("stages", {}).items():
            out.setdefault(key, f"{run}/{stage}")
    return out


def resolve(store: Store, ref: str, stage: str | None = None) -> str:
    """A key from a key, unique key prefix, run name (with `stage`), or RUN/STAGE."""
    run_name, _, run_stage = ref.partition("/")
    run_stage = run_stage or stage
    try:
        run = store.load_run(run_name)
    except CacheError:
        run = None
    if run is not None:
        if not run_stage:
            raise LtxError(
                f"{ref!r} is a run; name a stage too, e.g. {ref}/{next(iter(run['stages']), 'decode')}"
            )
        if run_stage not in run["stages"]:
            raise LtxError(f"run {run_name!r} has no stage {run_stage!r}; it has {', '.join(run['stages'])}")
        return run["stages"][run_stage]
    return store.resolve(ref)


@app.command("ls")
def cache_ls() -> None:
    """List artifacts: name, stage, key, size, age."""
    store = State.store()
    names, now = _names_by_key(store), time.time()
    rows = []
    for key in store.keys():
        try:
            m = store.manifest(key)
            stage = m.get("stage", "?")
        except CacheError:
            stage = "CORRUPT"
        age = now - store.modified(key)
        rows.append((names.get(key, "-"), stage, key[:12], _size(store.size(key)), _age(age)))
    if not rows:
        typer.echo(f"no artifacts in {store.root}")
        return
    widths = [max(len(r[i]) for r in rows + [("NAME", "STAGE", "KEY", "SIZE", "AGE")]) for i in range(5)]
    for r in [("NAME", "STAGE", "KEY", "SIZE", "AGE")] + rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _tree(node: dict[str, Any], indent: str = "") -> list[str]:
    lines = []
    for name, sub in node.get("inputs", {}).items():
        status = " (missing)" if sub.get("missing") else ""
        lines.append(f"{indent}{name}: {sub.get('stage', '?')} {sub['key'][:12]}{status}")
        lines += _tree(sub, indent + "  ")
    return lines


@app.command("show")
def cache_show(ref: Annotated[str, typer.Argument(help="Key, key prefix, or RUN/STAGE.")]) -> None:
    """Show an artifact's manifest and lineage (the tree of its inputs)."""
    store = State.store()
    key = resolve(store, ref)
    typer.echo(json.dumps(store.manifest(key), indent=2, sort_keys=True))
    lineage = store.lineage(key)
    typer.echo(f"lineage:\n{lineage['stage']} {key[:12]}")
    for line in _tree(lineage, "  "):
        typer.echo(line)


@app.command("verify")
def cache_verify(
    ref: Annotated[str | None, typer.Argument(help="Key, prefix or RUN/STAGE [default: all].")] = None,
) -> None:
    """Check every array of one or all artifacts against its checksum."""
    store = State.store()
    keys = [resolve(store, ref)] if ref else list(store.keys())
    bad = 0
    for key in keys:
        try:
            store.open(key, verify=True)
        except CacheError as e:
            bad += 1
            typer.echo(f"CORRUPT {key[:12]}: {e}")
    typer.echo(f"verified {len(keys)} artifacts: {len(keys) - bad} ok, {bad} corrupt")
    if bad:
        typer.echo("remove corrupt artifacts with `ltx cache rm KEY`; the next run recomputes them")
        raise typer.Exit(1)


@app.command("gc")
def cache_gc(
    unreferenced: Annotated[
        bool, typer.Option("--unreferenced", help="Also remove artifacts not reachable from any named run.")
    ] = False,
) -> None:
    """Remove debris of crashed writers (and, when asked, artifacts no run refers to)."""
    store = State.store()
    keep = None
    if unreferenced:
        keep = {k for run in store.runs().values() for k in run.get("stages", {}).values()}
    removed = store.gc(keep=keep)
    typer.echo(f"removed {removed['debris']} debris and {removed['artifacts']} artifacts")


@app.command("rm")
def cache_rm(refs: Annotated[list[str], typer.Argument(help="Keys, prefixes or RUN/STAGE.")]) -> None:
    """Remove artifacts."""
    store = State.store()
    for ref in refs:
        key = resolve(store, ref)
        store.remove(key)
        typer.echo(f"removed {key[:12]}")
