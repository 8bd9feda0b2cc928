"""Per-stage peak memory of a model at an output size (ltx.memory's estimates with the kernels that
run here), and whether a --memory-budget needs the transformer's blocks streamed from disk."""

from __future__ import annotations


def compute_itemsize() -> int:
    """Bytes per value of the compute dtype (ltx.backend.default_dtype)."""
    from ltx import backend

    return backend.default_dtype().size


def estimates(
    files, comps, height: int, width: int, frames: int, frame_rate: float, two_stage: bool, itemsize: int
):
    """(normal, streamed) per-stage peak estimates of a model at a size."""
    from ltx import memory, ops
    from ltx.model.transformer import TransformerConfig
    from ltx.weights import loader

    _, meta = loader.read_header(files.checkpoint)
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
        **ops.memory_paths(itemsize),
    )
    normal = memory.estimate_stages(comps, cfg, **args)
    streamed = memory.estimate_stages(comps, cfg, streamed_block_bytes=block, **args)
    return normal, streamed


def budget_needs_streaming(
    files, height: int, width: int, frames: int, frame_rate: float, two_stage: bool, budget_gb: float
) -> bool:
    """Whether --memory-budget requires streamed transformer blocks (ValueError if nothing fits)."""
    from ltx import memory

    itemsize = compute_itemsize()
    comps = memory.components(files.checkpoint, files.upsampler, files.gemma, itemsize)
    normal, streamed = estimates(files, comps, height, width, frames, frame_rate, two_stage, itemsize)
    return memory.plan(int(budget_gb * 1e9), normal, streamed)
