"""`ltx info MODEL`: components, parameters, dtypes, and the estimated peak memory of each stage."""

from __future__ import annotations

from typing import Annotated

import typer

from stages import budget
from stages.session import State


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.2f} MB"


def info(
    model: Annotated[
        str,
        typer.Argument(
            help="`tiny`, `tiny-2.3`, a model directory (official or converted), or a Hugging Face repo id."
        ),
    ] = "tiny",
    height: Annotated[int, typer.Option("--height", help="Output height in pixels.")] = 512,
    width: Annotated[int, typer.Option("--width", help="Output width in pixels.")] = 768,
    frames: Annotated[int, typer.Option("--frames", help="Number of frames (8k+1).")] = 121,
    frame_rate: Annotated[float, typer.Option("--frame-rate", help="Frames per second.")] = 24.0,
    two_stage: Annotated[
        bool, typer.Option("--two-stage/--one-stage", help="Half-resolution stage 1 + upsample + refine.")
    ] = True,
    memory_budget: Annotated[
        float | None,
        typer.Option(
            "--memory-budget",
            help="GB: say whether the run fits, and whether streaming transformer blocks is needed.",
        ),
    ] = None,
) -> None:
    """Show a model's components, parameter counts, dtypes, and estimated peak memory per stage."""
    from stages.models import resolve_model

    files = resolve_model(model, State.store()).ready()
    from ltx import memory, ops
    from ltx.weights import convert

    be = ops.describe()
    itemsize = budget.compute_itemsize()
    typer.echo(f"model {files.name} (LTX-{files.version}) at {files.root or files.checkpoint.parent}")
    typer.echo(f"backend: mlx {be['mlx']}, {be['device']}, BLAS {be['blas']}, compute dtype {be['dtype']}")
    typer.echo(f"conv kernels' GEMM: {be['conv_gemm']}; VAE 3x3 convs: {be['vae_convs']}")
    typer.echo(f"vocoder convs: {be['vocoder_convs']}")
    typer.echo(f"attention: {be['attention']}; MLX buffer cache: {be['buffer_cache']}")
    if convert.is_converted(files.checkpoint.parent):
        m = convert.read_manifest(files.checkpoint.parent)
        q = m["quantization"]
        typer.echo("converted: " + ("float" if q is None else f"{q['bits']}-bit, group {q['group_size']}"))
    comps = budget.components(files, itemsize)  # a split model: each component from its own file
    typer.echo("components:")
    for c in comps.values():
        typer.echo(f"  {c.name:32s} {c.parameters:>16,d} params  {_gb(c.bytes):>10s}  {c.dtypes}")
    normal, streamed = budget.estimates(files, comps, height, width, frames, frame_rate, two_stage, itemsize)
    typer.echo(
        f"estimated peak memory at {width}x{height}, {frames} frames ({'two' if two_stage else 'one'}-stage):"
    )
    for e, s in zip(normal, streamed, strict=True):
        extra = f"  (streamed blocks: {_gb(s.peak)})" if s.peak != e.peak else ""
        note = f"  [{e.note}]" if e.note else ""
        typer.echo(
            f"  {e.stage:13s} {_gb(e.peak):>10s} = weights {_gb(e.weights)} + activations {_gb(e.activations)}"
            f"{extra}{note}"
        )
    have = budget.machine_memory()
    over = [e.stage for e in normal if e.peak > have]
    typer.echo(
        f"this machine: {_gb(have)}"
        + (f"; over it: {', '.join(over)} (refused without --memory-budget or --force)" if over else "")
    )
    if memory_budget is not None:
        try:
            need = memory.plan(int(memory_budget * 1e9), normal, streamed)
            typer.echo(
                f"fits in {memory_budget:g} GB"
                + (" with streamed transformer blocks (--memory-budget)" if need else "")
            )
        except ValueError as e:
            typer.echo(f"does not fit: {e}")


def register(app: typer.Typer) -> None:
    app.command("info")(info)
