"""What the `ltx` command's global options set for this process (the cache directory, --debug,
--verbose), read by every command; and how commands talk to the user."""

from __future__ import annotations

from pathlib import Path

import typer

from cache.store import Store, default_root


class State:
    cache_dir: Path | str = default_root()  # a directory or an object store's URL
    debug: bool = False
    verbose: bool = False

    @classmethod
    def store(cls) -> Store:
        return Store(cls.cache_dir)


def echo(msg: str) -> None:
    """A status line for the user, on stderr (stdout carries keys and listings); inside a command's
    progress session, through its reporter (above a live bar)."""
    from stages import progress

    if not progress.message(msg):
        typer.echo(msg, err=True)
