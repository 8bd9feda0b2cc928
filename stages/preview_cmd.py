"""`ltx preview RUN|KEY`: a contact sheet (PNG) of evenly spaced decoded frames."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cache.errors import UnknownArtifact
from stages import progress
from stages.cache_cmd import resolve
from stages.framework import LtxError
from stages.session import State, echo


def preview(
    ref: Annotated[
        str,
        typer.Argument(help="Run name (its decode stage), RUN/STAGE, or a decode artifact's key (prefix)."),
    ],
    output_path: Annotated[
        Path | None,
        typer.Option(help="Where to write the PNG (default: preview-KEY.png, KEY the first 8 hex digits)."),
    ] = None,
    frames: Annotated[int, typer.Option(help="How many evenly spaced frames, first to last.")] = 8,
    columns: Annotated[int, typer.Option(help="Frames per row of the grid.")] = 4,
    json_out: Annotated[bool, typer.Option("--json", help="The result as a JSON line on stdout.")] = False,
) -> None:
    """Write a contact sheet of a decoded video: N evenly spaced frames in a grid, as a PNG."""
    from stages import preview as sheet

    if frames < 1 or columns < 1:
        raise LtxError(f"--frames and --columns must be at least 1 (got {frames} and {columns})")
    with progress.session(json=json_out):
        store = State.store()
        key = resolve(store, ref, stage="decode")
        try:
            stage = store.manifest(key).get("stage")
        except UnknownArtifact:
            raise LtxError(
                f"the decode artifact {key[:8]} of {ref!r} is not in the cache; `ltx decode {ref}` makes it"
            ) from None
        if stage != "decode":
            raise LtxError(f"artifact {key[:8]} is a {stage} artifact; ltx preview takes a decode artifact")
        path = output_path or Path(f"preview-{key[:8]}.png")
        sheet.contact_sheet(store, key, path, frames, columns)
        echo(f"wrote {path}")
        progress.output({"decode": key}, None, [path], show_keys=False)


def register(app: typer.Typer) -> None:
    app.command("preview")(preview)
