"""Progress reporting for the pipeline commands: a live bar in a terminal, plain lines otherwise,
JSON lines on stdout with --json.

A command enters `session(json=...)`; the reporter it picks is held in a context variable, so stage
code deep down reports through `framework.Context.progress(done, total, unit)` without passing it
around. Outside a session (library use, tests) `reporter(echo)` is a plain one writing through `echo`.

Plain lines (kept exactly: tests and scripts grep them):
    cached denoise 3f2a9c1e
    ran denoise 3f2a9c1e in 41.2 s
    denoise: step 3/8 (1.23 s/step)
    denoise: ~10 s for 8 steps          (once, after the first timed step)

JSON events (one object a line on stdout; nothing else goes to stdout):
    {"event": "start", "stage", "key", "cached"}
    {"event": "progress", "stage", "key", "done", "total", "unit", "seconds", "rate", "eta"}
    {"event": "end", "stage", "key", "seconds", "cached"}
    {"event": "output", "run", "paths", "keys"}        (what a command produced)
    {"event": "status", "stage", "state", "key", ...}   (`ltx status`)
    {"event": "error", "message"}                       (the command failed or was interrupted)

Only the standard library is imported here (`ltx --help` stays fast); rich is imported when a bar is shown.
"""

from __future__ import annotations

import json as _json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

_current: ContextVar[Reporter | None] = ContextVar("ltx_progress", default=None)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _seconds(s: float) -> str:
    return f"{s:.0f}" if s >= 10 else f"{s:.1f}"


def _plural(unit: str) -> str:
    return unit + ("es" if unit.endswith("s") else "s")


def _hms(s: float | None) -> str:
    if s is None:
        return "-:--:--"
    s = max(0, int(round(s)))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


@dataclass
class _Task:
    """One stage's loop: the first report is the baseline (time and units done before it)."""

    t0: float
    done0: int
    done: int = 0
    total: int | None = None
    unit: str = "step"
    rate: float | None = None  # seconds per unit since the baseline
    at: float = 0.0  # when the last report came
    estimated: bool = False

    @property
    def eta(self) -> float | None:
        if self.rate is None or self.total is None:
            return None
        return self.rate * max(0, self.total - self.done)


class Reporter:
    """Plain lines through `echo` (stderr by default): today's formats."""

    def __init__(self, echo: Callable[[str], None] = _stderr):
        self.echo = echo
        self._tasks: dict[tuple[str, str], _Task] = {}

    # -- what the framework and the stages call --------------------------------------------------------
    def start(self, stage: str, key: str) -> None:
        self._tasks.pop((stage, key), None)

    def end(self, stage: str, key: str, seconds: float) -> None:
        self._tasks.pop((stage, key), None)
        self.echo(f"ran {stage} {key[:8]} in {seconds:.1f} s")

    def cached(self, stage: str, key: str, seconds: float) -> None:
        self.echo(f"cached {stage} {key[:8]}")

    def progress(self, stage: str, key: str, done: int, total: int | None, unit: str = "step") -> None:
        now = time.monotonic()
        task = self._tasks.get((stage, key))
        if task is None:
            task = self._tasks[stage, key] = _Task(now, done)
        task.done, task.total, task.unit, task.at = done, total, unit, now
        if done > task.done0:
            task.rate = (now - task.t0) / (done - task.done0)
        self.show(stage, key, task)
        if task.rate is not None and not task.estimated:
            task.estimated = True
            if total is not None and total > done:
                self.estimate(stage, task)

    def message(self, text: str) -> None:
        self.echo(text)

    # -- what the commands call ------------------------------------------------------------------------
    def line(self, text: str, event: dict[str, Any]) -> None:
        """A result line on stdout (a key, a status row); with --json, `event` instead."""
        print(text, flush=True)

    def output(self, keys: dict[str, str], run: str | None, paths: list[str], show_keys: bool) -> None:
        if show_keys:
            for key in keys.values():
                print(key, flush=True)

    # -- the reporter's own ----------------------------------------------------------------------------
    def show(self, stage: str, key: str, task: _Task) -> None:
        if task.rate is None or task.total == 1:
            return  # the baseline; a single unit says no more than the "ran" line
        of = f"/{task.total}" if task.total is not None else ""
        self.echo(f"{stage}: {task.unit} {task.done}{of} ({task.rate:.2f} s/{task.unit})")

    def estimate(self, stage: str, task: _Task) -> None:
        """Once the first unit is timed: the whole loop's estimated time."""
        n = (task.total or 0) - task.done0
        self.message(f"{stage}: ~{_seconds(task.rate * n)} s for {n} {_plural(task.unit)}")

    def failed(self, error: BaseException) -> None:
        pass

    def close(self) -> None:
        pass


class JsonReporter(Reporter):
    """One JSON object a line on stdout; messages (notes, warnings) stay plain on stderr."""

    def emit(self, event: str, **fields: Any) -> None:
        print(_json.dumps({"event": event, **fields}), flush=True)

    def start(self, stage: str, key: str) -> None:
        super().start(stage, key)
        self.emit("start", stage=stage, key=key, cached=False)

    def end(self, stage: str, key: str, seconds: float) -> None:
        self._tasks.pop((stage, key), None)
        self.emit("end", stage=stage, key=key, seconds=round(seconds, 3), cached=False)

    def cached(self, stage: str, key: str, seconds: float) -> None:
        self.emit("start", stage=stage, key=key, cached=True)
        self.emit("end", stage=stage, key=key, seconds=round(seconds, 3), cached=True)

    def show(self, stage: str, key: str, task: _Task) -> None:
        self.emit(
            "progress",
            stage=stage,
            key=key,
            done=task.done,
            total=task.total,
            unit=task.unit,
            seconds=round(task.at - task.t0, 3),
            rate=None if task.rate is None else round(task.rate, 4),
            eta=None if task.eta is None else round(task.eta, 3),
        )

    def estimate(self, stage: str, task: _Task) -> None:
        pass  # every progress event carries its eta

    def message(self, text: str) -> None:
        _stderr(text)

    def line(self, text: str, event: dict[str, Any]) -> None:
        self.emit(**event)

    def output(self, keys: dict[str, str], run: str | None, paths: list[str], show_keys: bool) -> None:
        self.emit("output", run=run, paths=[str(p) for p in paths], keys=keys)

    def failed(self, error: BaseException) -> None:
        if isinstance(error, SystemExit) or getattr(error, "exit_code", None) is not None:
            return  # typer.Exit / click exits: not a failure of ours to report
        msg = "interrupted" if isinstance(error, KeyboardInterrupt) else str(error) or type(error).__name__
        self.emit("error", message=msg, type=type(error).__name__)


def _rich_columns() -> list:
    from rich.progress import BarColumn, ProgressColumn, TextColumn, TimeElapsedColumn
    from rich.text import Text

    class Count(ProgressColumn):
        def render(self, task: Any) -> Text:
            if task.total is None:
                return Text("")
            unit = _plural(task.fields["unit"])
            return Text(f"{task.completed:.0f}/{task.total:.0f} {unit}", style="progress.download")

    class Eta(ProgressColumn):
        """Remaining time from the stage's own average since its loop began, counting down between reports."""

        max_refresh = 0.5

        def render(self, task: Any) -> Text:
            eta_at = task.fields.get("eta_at")
            left = None if eta_at is None else max(0.0, eta_at - time.monotonic())
            return Text(f"eta {_hms(left)}", style="progress.remaining")

    class Rate(ProgressColumn):
        def render(self, task: Any) -> Text:
            rate = task.fields.get("rate")
            return Text(
                "" if rate is None else f"{rate:.2f} s/{task.fields['unit']}", style="progress.data.speed"
            )

    return [
        TextColumn("{task.description}"),
        BarColumn(),
        Count(),
        TimeElapsedColumn(),
        Eta(),
        Rate(),
    ]


class BarReporter(Reporter):
    """A live rich bar per running stage on stderr (a terminal); finished stages leave their plain line."""

    def __init__(self) -> None:
        super().__init__()
        from rich.console import Console
        from rich.progress import Progress

        self.console = Console(stderr=True, highlight=False)
        self.bars = Progress(
            *_rich_columns(),
            console=self.console,
            redirect_stdout=sys.stdout.isatty(),  # keys piped to a file stay on stdout
            redirect_stderr=True,
            refresh_per_second=4,
        )
        self.echo = lambda text: self.console.print(text, markup=False)
        self._ids: dict[tuple[str, str], Any] = {}
        self._live = False

    def _bar(self, stage: str, key: str) -> Any:
        if not self._live:
            self.bars.start()
            self._live = True
        if (stage, key) not in self._ids:
            self._ids[stage, key] = self.bars.add_task(f"{stage} {key[:8]}", total=None, unit="step")
        return self._ids[stage, key]

    def _drop(self, stage: str, key: str) -> None:
        bar = self._ids.pop((stage, key), None)
        if bar is not None:
            self.bars.remove_task(bar)
            self.bars.refresh()  # else the next line printed above the live display redraws the old bar

    def start(self, stage: str, key: str) -> None:
        super().start(stage, key)
        self._bar(stage, key)  # an indeterminate bar with the elapsed time until the stage reports a total
        self.bars.refresh()

    def end(self, stage: str, key: str, seconds: float) -> None:
        self._drop(stage, key)
        super().end(stage, key, seconds)

    def show(self, stage: str, key: str, task: _Task) -> None:
        self.bars.update(
            self._bar(stage, key),
            completed=task.done,
            total=task.total,
            unit=task.unit,
            rate=task.rate,
            eta_at=None if task.eta is None else task.at + task.eta,
        )
        self.bars.refresh()

    def close(self) -> None:
        if self._live:
            self.bars.stop()
            self._live = False


def _terminal() -> bool:
    return sys.stderr.isatty() and os.environ.get("TERM", "") not in ("dumb", "unknown")


@contextmanager
def session(json: bool = False) -> Iterator[Reporter]:
    """Report this command's stages: JSON lines (`json`), a live bar (stderr is a terminal) or plain lines."""
    outer = _current.get()
    if outer is not None:
        yield outer
        return
    rep = JsonReporter() if json else BarReporter() if _terminal() else Reporter()
    token = _current.set(rep)
    try:
        yield rep
    except BaseException as e:
        rep.failed(e)
        raise
    finally:
        rep.close()
        _current.reset(token)


def reporter(echo: Callable[[str], None] | None = None) -> Reporter:
    """The session's reporter, else plain lines through `echo`."""
    return _current.get() or Reporter(echo or _stderr)


def message(text: str) -> bool:
    """A status line through the session's reporter; False outside a session (the caller prints it)."""
    rep = _current.get()
    if rep is None:
        return False
    rep.message(text)
    return True


def line(text: str, **event: Any) -> None:
    """A result line on stdout; with --json, the event instead."""
    reporter().line(text, event)


def output(
    keys: dict[str, str], run: str | None = None, paths: list | tuple = (), show_keys: bool = True
) -> None:
    """What a command produced: its keys on stdout (`show_keys`), or with --json one "output" event."""
    reporter().output(keys, run, [str(p) for p in paths], show_keys)
