"""`ltx convert SRC DST`: an official model (or `tiny`) -> an MLX-native, optionally quantized directory."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from stages.framework import LtxError
from stages.session import State


def convert(
    src: Annotated[
        str,
        typer.Argument(
            help="Official model: `tiny`, `tiny-2.3`, a directory with the LTX-2 files, or a Hugging Face repo id."
        ),
    ],
    dst: Annotated[Path, typer.Argument(help="New directory for the converted model.")],
    quantize: Annotated[
        int | None,
        typer.Option(
            "--quantize",
            help="Quantize the transformer's block linears and Gemma's linears to 4 or 8 bits (MLX affine).",
        ),
    ] = None,
    group_size: Annotated[
        int, typer.Option("--group-size", help="Quantization group size: 32, 64 or 128.")
    ] = 64,
) -> None:
    """Convert a model to the MLX-native layout (memory-mapped loading; optional 4/8-bit weights)."""
    from stages.models import resolve_model

    store = State.store()
    files = resolve_model(src, store).ready()
    from ltx.weights import convert as conv

    if conv.is_converted(files.checkpoint.parent):
        raise LtxError(f"{src} is already converted; convert the official files instead")
    parts = {k: getattr(files, k) for k in conv.PARTS if getattr(files, k) is not None}  # a split model's
    source = conv.Source(
        files.checkpoint,
        files.upsampler,
        files.gemma,
        {
            "checkpoint": files.checkpoint_digest,
            "upsampler": files.upsampler_digest,
            "gemma": files.gemma_digest,
            **files.part_digests(),
        },
        parts,
    )
    start = time.perf_counter()
    try:
        manifest = conv.convert(
            source, dst, quantize, group_size, progress=lambda m: typer.echo(f"converting {m}", err=True)
        )
    except ValueError as e:
        raise LtxError(str(e)) from None
    q = manifest["quantization"]
    what = (
        "float"
        if q is None
        else (
            f"{q['bits']}-bit (group {q['group_size']}: {q['transformer_modules']} transformer "
            f"and {q['gemma_modules']} Gemma layers)"
        )
    )
    typer.echo(f"converted {files.name} -> {dst} ({what}) in {time.perf_counter() - start:.1f} s")


def register(app: typer.Typer) -> None:
    app.command("convert")(convert)
