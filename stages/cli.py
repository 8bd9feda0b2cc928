"""The `ltx` command line. Model code is imported lazily inside commands, so `ltx --help` and
`ltx cache ...` start fast and never import mlx."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from cache.errors import CacheError
from cache.store import default_root, is_url
from stages import cache_cmd, commands, convert_cmd, info_cmd, models_cmd, preview_cmd, sweep_cmd
from stages.framework import LtxError
from stages.session import State, echo

app = typer.Typer(
    name="ltx",
    help="LTX-2 audio+video generation on MLX, as cached, resumable stages.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(cache_cmd.app, name="cache")


@app.callback()
def _global(
    cache_dir: Annotated[
        str | None,
        typer.Option(
            "--cache-dir",
            envvar="LTX_CACHE",
            help="Artifact cache: a directory (default ~/.cache/ltx) or s3://BUCKET/PREFIX.",
        ),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", envvar="LTX_DEBUG", help="Show full tracebacks on errors.")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Say more (backend, BLAS, dtype).")
    ] = False,
) -> None:
    State.cache_dir = (cache_dir if is_url(cache_dir) else Path(cache_dir)) if cache_dir else default_root()
    State.debug, State.verbose = debug, verbose


commands.register(app)
convert_cmd.register(app)
info_cmd.register(app)
models_cmd.register(app)
preview_cmd.register(app)
sweep_cmd.register(app)


def _is_click_exception(e: Exception) -> bool:
    """Typer 0.28 bundles its own click (typer._click), so `click.ClickException` is not the class it
    raises; match the class by name, whichever click raised it."""
    return any(c.__name__ == "ClickException" for c in type(e).__mro__) and hasattr(e, "show")


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
        if _is_click_exception(e):  # a usage error: Typer's own message with the usage line, exit 2
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


if __name__ == "__main__":  # `python -m stages.cli`
    main()
