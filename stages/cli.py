"""The `ltx` command line. Model code is imported lazily inside commands, so `ltx --help` and
`ltx cache ...` start fast and never import mlx."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from cache.errors import CacheError
from cache.store import Store, default_root
from stages import commands, convert_cmd, info_cmd
from stages.framework import LtxError

app = typer.Typer(
    name="ltx",
    help="LTX-2 audio+video generation on MLX, as cached, resumable stages.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
cache_app = typer.Typer(help="Inspect and maintain the artifact cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


class State:
    cache_dir: Path = default_root()
    debug: bool = False
    verbose: bool = False

    @classmethod
    def store(cls) -> Store:
        return Store(cls.cache_dir)


@app.callback()
def _global(
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir", envvar="LTX_CACHE", help="Artifact cache directory (default ~/.cache/ltx)."
        ),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", envvar="LTX_DEBUG", help="Show full tracebacks on errors.")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Say more (backend, BLAS, dtype).")
    ] = False,
) -> None:
    State.cache_dir = cache_dir or default_root()
    State.debug, State.verbose = debug, verbose


def echo(msg: str) -> None:
    typer.echo(msg, err=True)


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


@cache_app.command("ls")
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
        age = now - store.path(key).stat().st_mtime
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


@cache_app.command("show")
def cache_show(ref: Annotated[str, typer.Argument(help="Key, key prefix, or RUN/STAGE.")]) -> None:
    """Show an artifact's manifest and lineage (the tree of its inputs)."""
    store = State.store()
    key = resolve(store, ref)
    typer.echo(json.dumps(store.manifest(key), indent=2, sort_keys=True))
    lineage = store.lineage(key)
    typer.echo(f"lineage:\n{lineage['stage']} {key[:12]}")
    for line in _tree(lineage, "  "):
        typer.echo(line)


@cache_app.command("verify")
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


@cache_app.command("gc")
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


@cache_app.command("rm")
def cache_rm(refs: Annotated[list[str], typer.Argument(help="Keys, prefixes or RUN/STAGE.")]) -> None:
    """Remove artifacts."""
    store = State.store()
    for ref in refs:
        key = resolve(store, ref)
        store.remove(key)
        typer.echo(f"removed {key[:12]}")


commands.register(app)
convert_cmd.register(app)
info_cmd.register(app)


def main() -> None:
    """Entry point: run the app; print errors as one line unless --debug or LTX_DEBUG=1."""
    debug = "--debug" in sys.argv or os.environ.get("LTX_DEBUG", "") not in ("", "0")
    try:
        commands.preprocess_argv()
        rc = app(standalone_mode=False)
        if rc == 130:  # typer turns Ctrl-C (KeyboardInterrupt) into a silent exit code 130: say how to resume
            raise KeyboardInterrupt
        sys.exit(rc if isinstance(rc, int) else 0)
    except (typer.Exit, SystemExit) as e:
        code = getattr(e, "exit_code", getattr(e, "code", 0))
        sys.exit(code or 0)
    except KeyboardInterrupt:
        echo("interrupted; finished work is kept in the cache: rerun the same command to resume")
        sys.exit(130)
    except Exception as e:  # noqa: BLE001
        import click

        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if debug:
            raise
        if isinstance(e, LtxError | CacheError | ValueError | OSError):
            msg = str(e) if not isinstance(e, OSError) or not e.filename else f"{e.strerror}: {e.filename}"
            echo(f"error: {msg}")
        else:
            echo(f"error: {type(e).__name__}: {e} (rerun with --debug for the traceback)")
        sys.exit(1)


if __name__ == "__main__":
    # `python -m stages.cli`: run the importable module's main, not this __main__ copy, so that the
    # commands (which import stages.cli) see the --cache-dir this copy would otherwise keep to itself
    from stages import cli as _cli

    _cli.main()
