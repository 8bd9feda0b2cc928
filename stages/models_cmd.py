"""`ltx models [PATH|REPO ...]`: the models this machine can run, and what each holds.

Lists the built-in tiny models, the folders (or repo ids) given, and every LTX repo in the Hugging Face
cache: each checkpoint (version, distilled/dev, dtype), upscaler (spatial x2, spatial x1.5, temporal x2),
LoRA, the Gemma `--model` would use, and the pipelines it can run. Reads headers only; writes nothing.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from stages.framework import LtxError


def _dtype(path: Path) -> str:
    """The transformer weights' dtype from the header: fp8 if any is F8, else the most common one."""
    from ltx.weights.header import CheckpointError, read_header

    try:
        header, _ = read_header(path)
    except CheckpointError as e:
        return f"unreadable ({e})"
    dtypes = Counter(
        info["dtype"] for name, info in header.items() if "transformer_blocks" in name
    ) or Counter(info["dtype"] for info in header.values())
    if any(d.startswith("F8") for d in dtypes):
        return "fp8"
    return dtypes.most_common(1)[0][0].lower() if dtypes else "empty"


def _pipelines(inv) -> tuple[list[str], list[str]]:
    """(pipelines it can run, why not for the others), as `--model` with no overrides would choose."""
    from stages import models
    from stages.options import PIPELINES, WITH_DISTILLED_LORA

    ok, why = [], []
    for p in PIPELINES:
        try:
            models.choose_checkpoint(inv, p)
            models.choose_upsampler(inv)
            models.choose_gemma(inv, None)
            if p in WITH_DISTILLED_LORA and len(inv.distilled_loras) != 1:
                raise LtxError("no single *distilled-lora* file: pass --distilled-lora PATH")
        except LtxError as e:
            why.append(f"{p}: {e}")
        else:
            ok.append(p + (" (with --lora IC_LORA --video-conditioning REF)" if p == "ic-lora" else ""))
    return ok, why


def _show(inv) -> None:
    from stages import models

    where = f"Hugging Face cache, {inv.root}" if inv.repo else "folder"
    typer.echo(f"{inv.label}  ({where})")
    for c in inv.checkpoints:
        variant = c.variant or "?"
        typer.echo(f"  checkpoint  {c.path.name}  LTX {c.version}, {variant}, {_dtype(c.path)}")
    for p, kind in inv.upsamplers:
        typer.echo(f"  upscaler    {p.name}  {kind}")
    for p in inv.loras:
        typer.echo(f"  lora        {p.name}" + ("  distilled LoRA" if p in inv.distilled_loras else ""))
    try:
        gemma = models.choose_gemma(inv, None)
        typer.echo(f"  gemma       {gemma}")
    except LtxError:
        typer.echo("  gemma       none found: pass --gemma-root PATH|REPO")
    ok, why = _pipelines(inv)
    typer.echo(f"  pipelines   {', '.join(ok) or 'none'}")
    for line in why:
        typer.echo(f"  cannot run  {line}")


def _show_converted(label: str, root: Path) -> None:
    from ltx.weights import convert

    m = convert.read_manifest(root)
    q = m["quantization"]
    what = "float" if q is None else f"{q['bits']}-bit"
    typer.echo(f"{label}  (converted by `ltx convert`, {what})")
    for k in ("checkpoint", "upsampler", "gemma"):
        typer.echo(f"  {k:11s} {m['files'][k]}")
    typer.echo(
        "  pipelines   distilled, dev, dev-two-stage, keyframes, hq and a2v (with --distilled-lora), ic-lora "
        "(with --lora IC_LORA --video-conditioning REF)"
    )


def list_models(
    paths: Annotated[
        list[str] | None,
        typer.Argument(help="Model folders or Hugging Face repo ids to describe (besides the cache's)."),
    ] = None,
) -> None:
    """List the models found here: built-in tiny ones, the folders given, the Hugging Face cache's LTX repos."""
    from ltx.weights import convert, tiny
    from stages import models

    for name, variant in models.TINY_NAMES.items():
        if name == "tiny-2.0":  # an alias of tiny
            continue
        m = tiny.load_manifest(variant)
        main = models.TINY25["transformer"] if variant in tiny.VARIANTS_12 else "model.safetensors"
        version = m["files"][main]["metadata"].get("model_version", variant)
        split = " (split: one file per component, Gemma 4)" if variant in tiny.VARIANTS_12 else ""
        typer.echo(
            f"{name}  (built in: LTX {version}, random weights, made in the cache on first use){split}\n"
            "  pipelines   distilled, dev, dev-two-stage, keyframes, ic-lora (its own IC-LoRA), hq, a2v "
            "(--audio-path); upscalers tiny:x2, tiny:x1.5"
        )
    seen: set[Path] = set()
    located = []
    for arg in paths or []:
        root = Path(arg).expanduser()
        if root.is_dir() and convert.is_converted(root):
            located.append((arg, root, None))
            continue
        inv = models.locate(arg)
        located.append((arg, inv.root, inv))
    cached = models.hf_repos()
    for repo, snapshot in cached:
        located.append((repo, snapshot, models.scan(snapshot, repo, repo=repo)))
    for label, root, inv in located:
        if root.resolve() in seen:
            continue
        seen.add(root.resolve())
        if inv is None:
            _show_converted(label, root)
        else:
            _show(inv)
    if not cached and not paths:
        typer.echo(
            f"no LTX repo in the Hugging Face cache ({models.hf_cache_dir()}); e.g. `huggingface-cli "
            "download Lightricks/LTX-2`, then `ltx generate --model Lightricks/LTX-2 ...`"
        )


def register(app: typer.Typer) -> None:
    app.command("models")(list_models)
