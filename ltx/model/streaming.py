"""Low-memory transformer: blocks streamed from the checkpoint, one at a time.

    model = load_streamed_transformer("model.safetensors")   # an LTXModel; X0Model(model) as usual

The top-level weights (patchify, AdaLN, caption projections, output head) stay resident. Each block
is built, loaded from the checkpoint (lazily: `mx.load` maps the file and reads only the block's
tensors when they are evaluated), run, evaluated and dropped before the next one, so the resident
weights are the top level plus one block instead of all blocks. The arithmetic is the normal
model's, op for op, so the outputs are bit-identical; what changes is when the graph is evaluated
(once per block) and that every forward pass reads the blocks from disk again.
"""

from __future__ import annotations

from ltx import backend  # noqa: F401  (sets up the BLAS before mlx)

# isort: split

from pathlib import Path

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402

from ltx.model.block import BasicAVTransformerBlock  # noqa: E402
from ltx.model.transformer import PREFIX, LTXModel, TransformerConfig, sanitize  # noqa: E402
from ltx.weights import loader, quantize  # noqa: E402
from ltx.weights.lora import apply_lora_pairs, load_lora  # noqa: E402


class _Source:
    """Where a block's weights live; a plain object so that Module.parameters() ignores it."""

    def __init__(self, path: Path, cfg: TransformerConfig, dtype: mx.Dtype, loras: list):
        self.path, self.cfg, self.dtype, self.loras = path, cfg, dtype, loras
        self.reads = 0  # block loads so far (tests count them)

    def block(self, idx: int) -> BasicAVTransformerBlock:
        prefix = f"{PREFIX}transformer_blocks.{idx}."
        weights = {k[len(prefix) :]: v for k, v in mx.load(str(self.path)).items() if k.startswith(prefix)}
        block = BasicAVTransformerBlock(idx, self.cfg, self.cfg.has_video, self.cfg.has_audio)
        quantize.quantize_like(block, weights)
        loader.load_strict(block, weights, self.dtype, f"transformer block {idx} in {self.path}")
        if self.loras:
            apply_lora_pairs(block, self.loras, prefix=f"transformer_blocks.{idx}.")
        self.reads += 1
        return block


class StreamedBlock(nn.Module):
    """Stands in for transformer block `idx`: loads it, runs it, evaluates, releases it."""

    def __init__(self, idx: int, source: _Source):
        super().__init__()
        self.idx = idx
        self._source = [source]  # hidden in a list of a non-module: not a parameter

    def __call__(self, v, a, per_sample):
        block = self._source[0].block(self.idx)
        v, a = block(v, a, per_sample)
        mx.eval([s.x for s in (v, a) if s is not None])
        del block
        return v, a


def load_streamed_transformer(
    path: str | Path,
    dtype: mx.Dtype | None = None,
    model_type: str = "av",
    loras: list[tuple[str | Path, float]] = (),
) -> LTXModel:
    """An LTXModel whose blocks are streamed from `path` per forward pass; loras as ltx.weights.lora.apply_loras."""

    path = Path(path)
    weights, metadata = loader.load_checkpoint(path)
    config = loader.read_config(metadata, path)
    cfg = TransformerConfig.from_dict(
        config.get("transformer", config), model_type, metadata.get("model_version")
    )
    dtype = dtype or backend.default_dtype()
    model = LTXModel(cfg)
    own = sanitize({k: v for k, v in weights.items() if k.startswith(PREFIX)})
    resident = {k: v for k, v in own.items() if not k.startswith("transformer_blocks.")}
    _check_blocks(cfg, own, path)
    pairs = [(str(p), load_lora(p), s) for p, s in loras]
    source = _Source(path, cfg, dtype, pairs)
    model.transformer_blocks = [StreamedBlock(i, source) for i in range(cfg.num_layers)]
    quantize.quantize_like(model, resident)
    loader.load_strict(model, resident, dtype, f"transformer in {path}")
    if pairs:
        top = [
            (n, {k: ab for k, ab in p.items() if not k.startswith("transformer_blocks.")}, s)
            for n, p, s in pairs
        ]
        apply_lora_pairs(model, top)
        for n, p, _ in pairs:  # every block LoRA module must exist: check now, not at step 1
            bad = [
                k for k in p if k.startswith("transformer_blocks.") and int(k.split(".")[1]) >= cfg.num_layers
            ]
            if bad:
                raise loader.CheckpointError(f"LoRA {n}: the model has no linear layer {bad[0]!r}")
    model.streaming_source = [source]
    return model


def _check_blocks(cfg: TransformerConfig, own: dict[str, mx.array], path: Path) -> None:
    """Strict names and shapes of every block's weights, from the header alone (nothing is read)."""
    for idx in range(cfg.num_layers):
        prefix = f"transformer_blocks.{idx}."
        block = BasicAVTransformerBlock(idx, cfg, cfg.has_video, cfg.has_audio)
        weights = {k[len(prefix) :]: v for k, v in own.items() if k.startswith(prefix)}
        quantize.quantize_like(block, weights)
        expected = dict(tree_flatten(block.parameters()))
        for k in sorted(set(expected) ^ set(weights)):
            what = "missing" if k in expected else "unexpected"
            raise loader.CheckpointError(f"transformer in {path}: {what} weight {prefix + k!r}")
        for k, v in weights.items():
            if tuple(v.shape) != tuple(expected[k].shape):
                raise loader.CheckpointError(
                    f"transformer in {path}: weight {prefix + k!r} has shape "
                    f"{tuple(v.shape)}, expected {tuple(expected[k].shape)}"
                )
    extra = [k for k in own if k.startswith("transformer_blocks.") and int(k.split(".")[1]) >= cfg.num_layers]
    if extra:
        raise loader.CheckpointError(f"transformer in {path}: unexpected weight {extra[0]!r}")
