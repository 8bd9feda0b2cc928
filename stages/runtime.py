"""Loading model components for the stages, once per process, and nothing a stage does not need.

Stages never import model code at module level: `ltx --help` and `ltx cache ...` stay fast.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

from stages.models import ModelFiles

_LOADED: dict[tuple, Any] = {}


def __getattr__(name: str) -> Any:
    """`from stages.runtime import mx`: mlx.core, imported after ltx.backend has set up the BLAS."""
    if name == "mx":
        import ltx.backend  # noqa: F401  (first: it loads the optimised BLAS, which must precede mlx)

        # isort: split
        import mlx.core

        return mlx.core
    raise AttributeError(name)


def _memo(key: tuple, build: Callable[[], Any]) -> Any:
    if key not in _LOADED:
        _LOADED[key] = build()
    return _LOADED[key]


def release(*kinds: str) -> None:
    """Free loaded components of the given kinds (all when none are named) before the next stage."""
    for key in [k for k in _LOADED if not kinds or k[0] in kinds]:
        del _LOADED[key]
    gc.collect()


def loaded_kinds() -> set[str]:
    return {k[0] for k in _LOADED}


def text_encoder(files: ModelFiles) -> Any:
    files.ready()
    from ltx.text.encoder import load_text_encoder

    release("transformer", "video_decoder", "video_encoder", "upsampler", "enhancer")
    return _memo(
        ("text", str(files.checkpoint), str(files.gemma)),
        lambda: load_text_encoder(files.checkpoint, files.gemma),
    )


def prompt_enhancer(files: ModelFiles) -> Any:
    """The separate Gemma 3 that --enhance-prompt runs on (--prompt-enhancer-gemma-root), alone in memory."""
    from ltx.text.enhance import load_prompt_enhancer

    release("transformer", "video_decoder", "video_encoder", "upsampler", "text")
    return _memo(("enhancer", str(files.enhancer)), lambda: load_prompt_enhancer(files.enhancer))


def transformer(files: ModelFiles, loras: tuple[tuple[str, float], ...] = (), stream: bool = False) -> Any:
    files.ready()
    from ltx.model.transformer import X0Model, load_transformer

    release("text")
    for key in [k for k in _LOADED if k[0] == "transformer" and k[2:] != (loras, stream)]:
        del _LOADED[key]  # another LoRA set: free it first, never hold two transformers
    gc.collect()

    def build() -> Any:
        if stream:  # --memory-budget: blocks are read from the memory-mapped file one at a time
            from ltx.model.streaming import load_streamed_transformer

            return X0Model(load_streamed_transformer(files.checkpoint, loras=list(loras)))
        model = load_transformer(files.checkpoint)
        if loras:  # fused into float weights, applied at run time beside quantized ones
            from ltx.weights.lora import apply_loras

            apply_loras(model, list(loras))
        return X0Model(model)

    return _memo(("transformer", str(files.checkpoint), loras, stream), build)


def duration_head(files: ModelFiles) -> Any:
    files.ready()
    from ltx.text.duration import load_duration_head

    path = files.component("duration_head")
    return _memo(("duration_head", str(path)), lambda: load_duration_head(path))


def video_encoder(files: ModelFiles) -> Any:
    files.ready()
    from ltx.video.vae import load_video_encoder

    path = files.component("video_vae")
    return _memo(("video_encoder", str(path)), lambda: load_video_encoder(path))


def video_decoder(files: ModelFiles, kind: str = "conv") -> Any:
    """The conv decoder (ltx.video.vae) or the diffusion decoder (ltx.video.diffusion_decoder) of the model."""
    files.ready()
    release("text", "transformer")
    path = files.decoder_file(kind)
    if kind == "diffusion":
        from ltx.video.diffusion_decoder import load_diffusion_decoder

        return _memo(("video_decoder", kind, str(path)), lambda: load_diffusion_decoder(path))
    from ltx.video.vae import load_video_decoder

    return _memo(("video_decoder", kind, str(path)), lambda: load_video_decoder(path))


def upsampler(files: ModelFiles) -> Any:
    files.ready()
    from ltx.video.upsampler import load_upsampler

    release("text", "transformer")
    return _memo(("upsampler", str(files.upsampler)), lambda: load_upsampler(files.upsampler))


def audio_encoder(files: ModelFiles) -> Any:
    files.ready()
    from ltx.audio.vae import load_audio_encoder

    release("text", "transformer")
    path = files.component("audio_vae")
    return _memo(("audio_encoder", str(path)), lambda: load_audio_encoder(path))


def audio_decoder(files: ModelFiles) -> Any:
    files.ready()
    from ltx.audio.vae import load_audio_decoder

    release("text", "transformer")
    path = files.component("audio_vae")
    return _memo(("audio_decoder", str(path)), lambda: load_audio_decoder(path))


def vocoder(files: ModelFiles) -> Any:
    files.ready()
    from ltx.audio.vocoder import load_vocoder

    release("text", "transformer")
    path = files.component("audio_vae")
    return _memo(("vocoder", str(path)), lambda: load_vocoder(path))
