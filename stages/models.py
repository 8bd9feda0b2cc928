"""Where model files come from: `--model tiny`, or a directory with the official LTX-2 files.

A model directory holds the single-file checkpoint (transformer, text projection and connectors,
video VAE, audio VAE, vocoder; its JSON config in the safetensors metadata), the spatial upsampler
file, and a Gemma-3 directory. Each component's identity in cache keys is the content digest of
the file it comes from, so swapping weights changes exactly the keys of the stages that use them.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from cache.keys import tree_digest
from cache.store import Store
from stages.framework import LtxError

TINY_NAMES = {"tiny": "2.0", "tiny-2.0": "2.0", "tiny-2.3": "2.3"}
TINY_LORA = "tiny:distilled_lora"  # the tiny model's own distilled LoRA, created with it


def _metadata(path: Path) -> dict[str, str]:
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > 100 << 20 or n + 8 > path.stat().st_size:
                return {}
            return json.loads(f.read(n)).get("__metadata__") or {}
    except (OSError, ValueError, struct.error):
        return {}


def _config(path: Path) -> dict:
    try:
        return json.loads(_metadata(path).get("config", "{}"))
    except json.JSONDecodeError:
        return {}


@dataclass
class ModelFiles:
    """The files of one model and their content digests (memoised in the store)."""

    name: str
    checkpoint: Path
    upsampler: Path
    gemma: Path
    store: Store
    tiny_variant: str | None = None
    recorded: dict[str, str] | None = None  # digests recorded by `ltx convert` (the source's identity)

    @cached_property
    def version(self) -> str:
        if self.tiny_variant is not None:
            return self.tiny_variant
        return _metadata(self.checkpoint).get("model_version", "2.0")

    def ready(self) -> ModelFiles:
        """Create the tiny model's files on first use (a real model's files just exist)."""
        root = self.checkpoint.parent
        if self.tiny_variant is not None and not root.is_dir():
            from ltx.weights import tiny

            root.parent.mkdir(parents=True, exist_ok=True)
            try:
                tiny.create(self.tiny_variant, root)
            except OSError:
                if not root.is_dir():  # a concurrent creator won the rename: use theirs
                    raise
        return self

    def _digest(self, path: Path) -> str:
        if self.tiny_variant is not None:
            from ltx.weights import tiny

            return f"tiny-{self.tiny_variant}-{tiny.manifest_digest(self.tiny_variant)}:{path.relative_to(self.checkpoint.parent)}"
        return self.store.digest(path)

    @cached_property
    def checkpoint_digest(self) -> str:
        return self.recorded["checkpoint"] if self.recorded else self._digest(self.checkpoint)

    @cached_property
    def transformer_digest(self) -> str:
        """The transformer's identity: differs from the checkpoint's only for a quantized conversion."""
        return (
            self.recorded.get("transformer", self.checkpoint_digest)
            if self.recorded
            else self.checkpoint_digest
        )

    @cached_property
    def upsampler_digest(self) -> str:
        return self.recorded["upsampler"] if self.recorded else self._digest(self.upsampler)

    def lora_digest(self) -> str:
        """The tiny model's own distilled LoRA."""
        return self._digest(self.checkpoint.parent / "distilled_lora.safetensors")

    @cached_property
    def gemma_digest(self) -> str:
        if self.recorded:
            return self.recorded["gemma"]
        if self.tiny_variant is not None:
            return self._digest(self.gemma)
        return tree_digest(self.gemma)


def _tiny(store: Store, variant: str) -> ModelFiles:
    from ltx.weights import tiny

    digest = tiny.manifest_digest(variant)[:16]
    root = store.root / "models" / f"tiny-{variant}-{digest}"
    return ModelFiles(
        f"tiny-{variant}",
        root / "model.safetensors",
        root / "upsampler.safetensors",
        root / "gemma",
        store,
        tiny_variant=variant,
    )


def resolve_model(model: str | None, store: Store) -> ModelFiles:
    """`tiny` (default), `tiny-2.3`, or a directory with the official files."""
    model = model or os.environ.get("LTX_MODEL") or "tiny"
    if model in TINY_NAMES:
        return _tiny(store, TINY_NAMES[model])
    root = Path(model).expanduser()
    if not root.is_dir():
        raise LtxError(
            f"--model {model!r} is neither 'tiny' nor a directory; pass a directory with the official "
            "LTX-2 checkpoint, the spatial upsampler and a Gemma-3 directory"
        )
    from ltx.weights.convert import converted_files, is_converted

    if is_converted(root):
        c = converted_files(root)
        return ModelFiles(
            root.name, c["checkpoint"], c["upsampler"], c["gemma"], store, recorded=c["digests"]
        )
    files = sorted(root.glob("*.safetensors"))
    mains = [p for p in files if "transformer" in _config(p)]
    ups = [p for p in files if p not in mains and ("upscaler" in p.name or "upsampler" in p.name)]
    gemmas = [
        d
        for d in sorted(root.iterdir())
        if d.is_dir() and any(d.glob("tokenizer*")) and any(d.rglob("model*.safetensors"))
    ]
    if not mains:
        raise LtxError(
            f"no LTX-2 checkpoint in {root}: expected a .safetensors file whose metadata 'config' has a "
            "'transformer' section (e.g. ltx-2-19b-distilled.safetensors)"
        )
    if len(mains) > 1:
        raise LtxError(
            f"{root} holds several checkpoints ({', '.join(p.name for p in mains)}); keep one per model directory"
        )
    if len(ups) != 1:
        raise LtxError(
            f"expected one spatial upsampler file (e.g. ltx-2-spatial-upscaler-x2-1.0.safetensors) in {root}, "
            f"found {len(ups)}"
        )
    if len(gemmas) != 1:
        raise LtxError(
            f"expected one Gemma-3 directory (tokenizer and model*.safetensors) in {root}, found {len(gemmas)}"
        )
    return ModelFiles(root.name, mains[0], ups[0], gemmas[0], store)
