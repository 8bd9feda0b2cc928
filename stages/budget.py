"""Per-stage peak memory of a model at an output size (ltx.memory's estimates with the kernels that
run here), whether a --memory-budget needs the transformer's blocks streamed from disk, and the
pre-flight that refuses a run that cannot fit in this machine's memory before anything is written."""

from __future__ import annotations

import os

from stages.framework import LtxError

# ltx.memory's stage names -> the pipeline's node labels
NODE_LABELS = {"decode-audio": "decode_audio"}


def compute_itemsize() -> int:
    """Bytes per value of the compute dtype (ltx.backend.default_dtype)."""
    from ltx import backend

    return backend.default_dtype().size


def machine_memory() -> int:
    """Bytes the computation can use here: the GPU's recommended working set (Apple's unified memory) or
    memory where MLX reports one, else the machine's physical memory."""
    import mlx.core as mx

    info = mx.device_info() if hasattr(mx, "device_info") else {}
    for key in ("max_recommended_working_set_size", "memory_size", "total_memory"):
        if isinstance(info.get(key), int) and info[key] > 0:
            return int(info[key])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _headers(files) -> dict | None:
    """The tiny model's headers from its manifest while its files are not written yet (else None: read them)."""
    if files.tiny_variant is None or files.checkpoint.is_file():
        return None
    from ltx.weights import tiny

    return tiny.headers(files.tiny_variant, files.root or files.checkpoint.parent)


def estimates(
    files,
    comps,
    height: int,
    width: int,
    frames: int,
    frame_rate: float,
    two_stage: bool,
    itemsize: int,
    decoder: str | None = None,
    upsampler_scale: float = 2.0,
):
    """(normal, streamed) per-stage peak estimates of a model at a size (decode with `decoder`, default
    the model's own: the diffusion decoder where it has one; a two-stage run's stage 1 at 1/upsampler_scale
    of the size, as pipeline.build sizes it)."""
    from ltx import memory, ops
    from ltx.model.transformer import TransformerConfig
    from ltx.weights import loader

    headers = _headers(files)
    _, meta = headers[files.checkpoint] if headers else loader.read_header(files.checkpoint)
    section = loader.read_config(meta, files.checkpoint)["transformer"]
    cfg = TransformerConfig.from_dict(section)
    block = comps["transformer"].bytes // max(cfg.num_layers, 1)  # blocks hold ~98% of the transformer
    args = dict(
        height=height,
        width=width,
        frames=frames,
        fps=frame_rate,
        itemsize=itemsize,
        two_stage=two_stage,
        stage1=stage1_size(height, width, upsampler_scale) if two_stage else None,
        decoder=decoder or files.decoders[0],
        **ops.memory_paths(itemsize),
    )
    normal = memory.estimate_stages(comps, cfg, **args)
    streamed = memory.estimate_stages(comps, cfg, streamed_block_bytes=block, **args)
    return normal, streamed


def stage1_size(height: int, width: int, upsampler_scale: float) -> tuple[int, int]:
    """A two-stage run's stage-1 size: 1/2 of the output for an x2 upsampler, 2/3 for x1.5."""
    from stages import validate

    num, den = validate.upsampler_ratio(upsampler_scale)
    return height * den // num, width * den // num


def components(files, itemsize: int):
    from ltx import memory

    return memory.components(
        files.checkpoint,
        files.upsampler,
        files.gemma,
        itemsize,
        headers=_headers(files),
        diffusion_vae=files.diffusion_vae,
        video_vae=files.video_vae,
        audio_vae=files.audio_vae,
        conv_vae=files.conv_vae,
        duration_head=files.duration_head,
        gemma_label="Gemma 4" if files.gemma_kind.startswith("gemma4") else "Gemma 3",
    )


def _stage_estimates(files, o):
    itemsize = compute_itemsize()
    comps = components(files, itemsize)
    frames = o.num_frames if o.num_frames is not None else _max_frames(o)
    scale = files.upsampler_scale if o.two_stage else 2.0
    return estimates(
        files, comps, o.height, o.width, frames, o.frame_rate, o.two_stage, itemsize, o.decoder, scale
    )


def _max_frames(o) -> int:
    """The longest video --auto-duration can predict: the estimate must hold for it."""
    from ltx.text.duration import seconds_to_frames

    lo, hi = o.auto_duration
    fps = float(o.frame_rate)
    return seconds_to_frames(hi, fps, round(lo * fps), round(hi * fps))


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB"


def preflight(files, o, pending: set[str], force: bool = False) -> bool:
    """Whether the transformer's blocks must stream (--memory-budget). Refuses, before anything is written,
    when a stage still to run (node labels in `pending`) is estimated above --memory-budget or, without one,
    above this machine's memory; --force runs anyway (streaming where a budget asks for it)."""
    from ltx import memory

    normal, streamed = _stage_estimates(files, o)
    todo = lambda es: [e for e in es if NODE_LABELS.get(e.stage, e.stage) in pending]  # noqa: E731
    if not todo(normal):  # every estimated stage is cached
        return False
    if o.memory_budget is not None:
        try:
            return memory.plan(int(o.memory_budget * 1e9), todo(normal), todo(streamed))
        except ValueError as e:
            if force:
                return True
            raise LtxError(f"{e}; --force runs anyway") from None
    have = machine_memory()
    over = [e for e in todo(normal) if e.peak > have]
    if not over or force:
        return False
    worst = max(over, key=lambda e: e.peak)
    fixes = [
        "a smaller --height/--width/--num-frames",
        "a quantized model (ltx convert MODEL DIR --quantize 8)",
    ]
    fit = max((e.peak for e in todo(streamed)), default=0)
    if fit <= have:
        fixes.append(f"--memory-budget {have / 1e9:.0f} (streams the transformer's blocks: about {_gb(fit)})")
    raise LtxError(
        f"the {worst.stage} stage needs about {_gb(worst.peak)} at {o.width}x{o.height}, {o.num_frames} frames, "
        f"but this machine has {_gb(have)}; use {', or '.join(fixes)}; --force runs anyway"
    )
