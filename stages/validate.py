"""The checks stages/options.py runs on what a user hands in: numbers, names, and the files options
name (images, audio, weights), before anything is computed or written to the cache.

Each check raises `LtxError` with one line naming the bad value and the fix. `options.resolve` calls
them while the pipeline graph is built, so a bad input fails before the first artifact (or digest
memo, or tiny-model file) is written.

Files are untrusted: images and audio are probed by decoding them (imageio, PyAV), weights by
their safetensors header only (size-checked before it is parsed; no pickle anywhere).
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

from stages.framework import LtxError

# RoPE positions of the video transformer are pixel coordinates scaled by max_pos (config default [20, 2048, 2048]).
MAX_PIXELS = 2048
FLOAT_DTYPES = {"F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"}


# ---- numbers and names ---------------------------------------------------------------------------
def prompt(text: str | None) -> str:
    if text is None or not str(text).strip():
        raise LtxError('--prompt is empty; describe the video to generate, e.g. --prompt "a fox in the snow"')
    return text


def finite(option: str, value: float | None) -> None:
    if value is not None and (not isinstance(value, int | float) or not math.isfinite(value)):
        raise LtxError(f"{option} {value} must be a finite number")


def strength(option: str, value: float) -> None:
    finite(option, value)
    if not 0.0 <= value <= 1.0:
        raise LtxError(
            f"{option} {value} is outside [0, 1]; use 1.0 to keep the image exactly, lower to let it change"
        )


def steps(value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise LtxError(f"--steps {value} must be an integer >= 1 (e.g. 40)")


def frames(n: int) -> None:
    if not isinstance(n, int) or n < 1:
        raise LtxError(f"--num-frames {n} must be a positive integer of the form 1 + 8k (e.g. 121)")
    if (n - 1) % 8:
        lo = 1 + (n - 1) // 8 * 8
        raise LtxError(f"--num-frames {n} must be of the form 1 + 8k; use {lo} or {lo + 8}")


# spatial upsampler scale -> (num, den): stage 1 runs at den/num of the output (ltx.video.upsampler.RATIONAL_SCALES)
UPSAMPLER_RATIOS = {2.0: (2, 1), 1.5: (3, 2), 4.0: (4, 1)}


def upsampler_ratio(scale: float) -> tuple[int, int]:
    if float(scale) not in UPSAMPLER_RATIOS:
        raise LtxError(
            f"a spatial upsampler of scale {scale:g} cannot size a two-stage run; use an x2 or x1.5 upsampler"
        )
    return UPSAMPLER_RATIOS[float(scale)]


def resolution(
    height: int, width: int, two_stage: bool, max_pixels: int = MAX_PIXELS, scale: float = 2.0
) -> None:
    """One-stage: divisible by 32 (the VAE). Two-stage with an x(num/den) upsampler: stage 1 runs at den/num
    of the size on whole latents divisible by den (the rational resampler's stride), so the output must be
    divisible by 32 * num: 64 for x2, 96 for x1.5."""
    num, _ = upsampler_ratio(scale) if two_stage else (1, 1)
    divisor = 32 * num
    where = "one-stage pipelines" if not two_stage else "two-stage pipelines"
    if two_stage and num != 2:
        where += f" with the x{scale:g} upsampler (stage 1 runs at 1/{scale:g} of it on whole latents)"
    for name, v in (("height", height), ("width", width)):
        if not isinstance(v, int) or v <= 0:
            raise LtxError(f"--{name} {v} must be a positive integer divisible by {divisor}")
        if v % divisor:
            lo = v // divisor * divisor
            near = f"{lo + divisor}" if lo <= 0 else f"{lo} or {lo + divisor}"
            raise LtxError(f"--{name} {v} must be divisible by {divisor} for {where}; use {near}")
        if v > max_pixels:
            raise LtxError(
                f"--{name} {v} is above the positional range of the model ({max_pixels} pixels); "
                f"use at most {max_pixels // divisor * divisor}"
            )


def crf(option: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 51:
        raise LtxError(
            f"{option} {value} must be an integer from 0 to 51 (H.264 CRF; 0 turns the round trip off)"
        )


def tiling(value: str) -> None:
    """A decode tiling the video decoder can parse (ltx.video.tiling.parse_tiling)."""
    from ltx.video.tiling import parse_tiling

    try:
        parse_tiling(value)
    except ValueError as e:
        raise LtxError(f"--tiling: {e}") from None


def decoder(kind: str, tiling_value: str, files: Any) -> None:
    """A video decoder the model has (`files.decoder_file` says which it lacks), and a tiling it can use."""
    from stages.decode import DECODERS

    if kind not in DECODERS:
        raise LtxError(f"--decoder {kind!r} is unknown; choose one of {', '.join(DECODERS)}")
    path = files.decoder_file(kind)
    if kind != "diffusion" or not path.is_file():  # the tiny model's files are written on first use
        return
    from ltx.video.diffusion_decoder import DiffusionDecoderConfig, tiling_for
    from ltx.video.tiling import PRESETS, parse_tiling
    from ltx.weights import loader

    try:
        cfg = DiffusionDecoderConfig.from_vae(loader.read_config(loader.read_header(path)[1], path)["vae"])
        tiling_for(parse_tiling(tiling_value), cfg.overlaps, tiling_value in PRESETS)
    except (ValueError, KeyError) as e:
        raise LtxError(f"--decoder diffusion with --tiling {tiling_value}: {e}") from None


def outputs(output_path: Path | None, output_audio: Path | None, no_audio: bool) -> None:
    """The requested files' containers follow their extensions: video with audio, or audio alone."""
    from stages.mux import AUDIO_CONTAINERS, VIDEO_CONTAINERS

    if output_path is not None:
        suffix = Path(output_path).suffix.lower()
        if suffix not in VIDEO_CONTAINERS + AUDIO_CONTAINERS:
            raise LtxError(
                f"--output-path {output_path}: {suffix or 'no extension'} is not a container this writes; "
                f"use {', '.join(VIDEO_CONTAINERS)} (video with audio) or {', '.join(AUDIO_CONTAINERS)} (audio only)"
            )
        if no_audio and suffix in AUDIO_CONTAINERS:
            raise LtxError(f"--output-path {output_path} is audio only, but --no-audio drops the audio")
    if output_audio is not None:
        suffix = Path(output_audio).suffix.lower()
        if suffix not in AUDIO_CONTAINERS:
            raise LtxError(
                f"--output-audio {output_audio}: {suffix or 'no extension'} is not an audio container; "
                f"use {' or '.join(AUDIO_CONTAINERS)}"
            )
        if no_audio:
            raise LtxError("--output-audio and --no-audio contradict each other; drop one")


def run_name(name: str) -> str:
    from cache.store import check_run_name

    return check_run_name(name)


# ---- media ------------------------------------------------------------------------------------------
def _existing_file(path: str | Path, option: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise LtxError(f"{option} {path} does not exist; check the path")
    if not p.is_file():
        raise LtxError(f"{option} {path} is not a file; pass an image or audio file")
    return p


def image_file(path: str | Path, option: str = "--image") -> None:
    """The file exists and decodes as an image (the whole image is decoded: truncation is caught)."""
    p = _existing_file(path, option)
    try:
        import imageio.v3 as iio

        arr = iio.imread(p, index=0)
    except Exception as e:  # noqa: BLE001  (any decoder failure means "not a usable image")
        raise LtxError(
            f"{option} {path} is not a readable image ({_why(e)}); pass a PNG, JPEG or WebP file"
        ) from None
    if arr.ndim not in (2, 3) or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise LtxError(
            f"{option} {path} is not a still image (decoded shape {arr.shape}); pass a PNG, JPEG or WebP file"
        )


def audio_file(
    path: str | Path, option: str = "--audio-path", start_time: float = 0.0, max_duration: float | None = None
) -> tuple[int, int]:
    """The file exists and its first audio stream decodes from start_time (every frame read: truncation is
    caught), as the encode_audio stage will read it; returns (samples read, sample rate)."""
    p = _existing_file(path, option)
    if _wav_truncated(p):
        raise LtxError(
            f"{option} {path} is truncated (its data chunk is shorter than its header says); "
            "pass the complete file"
        )
    from ltx.audio.mel import AudioDecodeError, load_audio

    try:
        wave, rate = load_audio(p, start_time, max_duration)
    except AudioDecodeError as e:
        if "no audio samples" not in str(e):
            raise LtxError(
                f"{option} {path} is not a readable audio file ({_why(e)}); {AUDIO_FORMATS}"
            ) from None
        after = f" after --audio-start-time {start_time:g} s" if start_time else ""
        raise LtxError(
            f"{option} {path} holds no audio samples{after}; pass a non-empty audio file"
        ) from None
    except ValueError as e:  # more than two channels
        raise LtxError(f"{option} {e}; downmix it to stereo") from None
    except Exception as e:  # noqa: BLE001  (any decoder failure means "not usable audio")
        raise LtxError(f"{option} {path} is not a readable audio file ({_why(e)}); {AUDIO_FORMATS}") from None
    return wave.shape[0], rate


AUDIO_FORMATS = "pass a WAV, FLAC or MP3 file, or a video with an audio track"
VIDEO_FORMATS = "pass an .mp4, .mov or .mkv file with a video stream"


def source_video(path: str | Path, option: str = "SOURCE") -> tuple[float, int, int, int, bool]:
    """A retake's source: the file exists and its first video stream decodes (every frame is decoded and
    counted, so a truncated file is caught); its audio, if any, decodes too. (fps, frames, width, height,
    has_audio)."""
    p = _existing_file(path, option)
    try:
        import av

        with av.open(str(p)) as container:
            stream = next((s for s in container.streams if s.type == "video"), None)
            if stream is None:
                raise LtxError(f"{option} {path} has no video stream; {VIDEO_FORMATS}")
            has_audio = any(s.type == "audio" for s in container.streams)
            fps = float(stream.average_rate) if stream.average_rate else 0.0
            declared = stream.frames
            width, height = int(stream.codec_context.width), int(stream.codec_context.height)
            decoded = sum(1 for _ in container.decode(stream))
    except LtxError:
        raise
    except Exception as e:  # noqa: BLE001  (any decoder failure means "not a usable video")
        raise LtxError(f"{option} {path} is not a readable video ({_why(e)}); {VIDEO_FORMATS}") from None
    if decoded == 0 or fps <= 0 or not math.isfinite(fps):
        raise LtxError(f"{option} {path} has no decodable frames or no frame rate; {VIDEO_FORMATS}")
    if declared and declared != decoded:
        raise LtxError(
            f"{option} {path} declares {declared} frames but {decoded} decode; it is truncated: pass the "
            "complete file"
        )
    if has_audio:
        audio_file(p, option)
    return fps, decoded, width, height, has_audio


def video_file(path: str | Path, option: str) -> tuple[float, int, int, int]:
    """The file exists, has a video stream and its first frame decodes: (fps, frames, width, height)."""
    p = _existing_file(path, option)
    try:
        from ltx.video.media import decode_video_frames, probe_video

        fps, frames, width, height = probe_video(p)
        decode_video_frames(p, 0, 1)
    except Exception as e:  # noqa: BLE001  (any decoder failure means "not a usable video")
        raise LtxError(
            f"{option} {path} is not a readable video ({_why(e)}); pass an MP4, MOV, MKV or WebM file"
        ) from None
    if frames < 1 or width < 1 or height < 1:
        raise LtxError(f"{option} {path} holds no video frames; pass a non-empty video file")
    return fps, frames, width, height


def _wav_truncated(p: Path) -> bool:
    """libsndfile reads a truncated WAV without complaint: compare the data chunk's declared size with the file."""
    with open(p, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return False
        size, pos = p.stat().st_size, 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk, n = f.read(4), struct.unpack("<I", f.read(4))[0]
            if chunk == b"data":
                return pos + 8 + n > size
            pos += 8 + n + (n & 1)
    return False


def _why(e: Exception) -> str:
    if "Could not find a backend" in str(e):
        return "unrecognised format"
    text = " ".join(str(e).split())[:120]
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


# ---- weights -------------------------------------------------------------------------------------
def safetensors_header(path: str | Path, what: str) -> tuple[dict[str, Any], dict[str, str]]:
    """(tensors, metadata) of a safetensors file, checked before anything is parsed (ltx.weights.header)."""
    from ltx.weights.header import CheckpointError, read_header

    try:
        return read_header(path)
    except CheckpointError as e:
        raise LtxError(f"{what} {e}; download it again") from None


def _float_weights(header: dict[str, Any], path: Path, what: str) -> None:
    """Every tensor is a float, or the uint32 packed weight of a layer `ltx convert --quantize` stored
    as MLX packs it (`<m>.weight` beside float `<m>.scales` and `<m>.biases`)."""
    for name, info in header.items():
        base = name[: -len(".weight")] if name.endswith(".weight") else None
        packed = info["dtype"] == "U32" and base is not None
        if packed and {f"{base}.scales", f"{base}.biases"} <= header.keys():
            continue
        if info["dtype"] not in FLOAT_DTYPES:
            raise LtxError(
                f"{what} {path}: tensor {name!r} has dtype {info['dtype']}, expected a float type "
                f"({', '.join(sorted(FLOAT_DTYPES))}); is this the right file?"
            )


def _config(metadata: dict[str, str], path: Path, what: str, section: str) -> dict[str, Any]:
    if "config" not in metadata:
        raise LtxError(
            f"{what} {path} has no 'config' metadata; is it an official LTX-2 single-file checkpoint?"
        )
    try:
        config = json.loads(metadata["config"])
    except (TypeError, json.JSONDecodeError):
        raise LtxError(
            f"{what} {path}: its 'config' metadata is not valid JSON; download the file again"
        ) from None
    if not isinstance(config, dict) or (section and not isinstance(config.get(section), dict)):
        raise LtxError(
            f"{what} {path}: its 'config' metadata has no '{section}' section; is it the right file?"
        )
    return config


def checkpoint_shapes(files: Any) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of the model's checkpoint, from the header (the tiny model: from its manifest,
    so that nothing has to be created on disk to check a LoRA against it)."""
    if files.tiny_variant is not None:
        from ltx.weights import tiny

        rel = files.checkpoint.relative_to(files.root) if files.root else Path("model.safetensors")
        tensors = tiny.load_manifest(files.tiny_variant)["files"][str(rel)]["tensors"]
        return {k: tuple(v) for k, v in tensors.items()}
    header, _ = safetensors_header(files.checkpoint, "checkpoint")
    return {k: tuple(v["shape"]) for k, v in header.items()}


def model_files(files: Any) -> None:
    """A model directory's checkpoint, upsampler and Gemma files: present, intact headers, config, float dtypes,
    and every component's weights of the shapes its config implies (modules are built lazily: no weights are read)."""
    if files.tiny_variant is not None:
        return  # synthesised from the package's own manifest
    ckpt = Path(files.checkpoint)
    header, metadata = safetensors_header(ckpt, "checkpoint")
    _config(metadata, ckpt, "checkpoint", "transformer")
    _float_weights(header, ckpt, "checkpoint")
    up = Path(files.upsampler)
    up_header, up_meta = safetensors_header(up, "upsampler")
    _config(up_meta, up, "upsampler", "")
    _float_weights(up_header, up, "upsampler")
    gemma = Path(files.gemma)
    if gemma.is_file():  # LTX-2.5's packed text encoder: Gemma 4, its tokenizer and the text projection
        _, meta = safetensors_header(gemma, "text encoder")
        if "gemma_config" not in meta:
            raise LtxError(
                f"--gemma-root {gemma} has no 'gemma_config' metadata; pass a Gemma folder or LTX-2.5's packed "
                "text-encoder file (text_encoders/gemma4-*.safetensors)"
            )
        _component_shapes(files)
        return
    if not (gemma / "config.json").is_file() or not any(gemma.glob("tokenizer*")):
        raise LtxError(
            f"Gemma directory {gemma} lacks config.json or the tokenizer files; copy the whole Gemma-3 directory"
        )
    shards = sorted(gemma.rglob("model*.safetensors"))
    if not shards:
        raise LtxError(f"Gemma directory {gemma} has no model*.safetensors; copy the whole Gemma-3 directory")
    for shard in shards:
        safetensors_header(shard, "Gemma weights")
    _component_shapes(files)


GEMMA3_REPO = "google/gemma-3-12b-it-qat-q4_0-unquantized"


def text_files(files: Any, enhance: bool) -> None:
    """The Gemma folder is the one the checkpoint needs (its gemma_source_checkpoint, else a Gemma 3), and with
    --enhance-prompt a Gemma that generates: LTX-2.5's Gemma 4 does not, --prompt-enhancer-gemma-root names one."""
    if files.tiny_variant is None:
        from ltx.text.encoder import check_gemma
        from ltx.text.gemma import gemma_folder_config
        from ltx.weights.loader import CheckpointError

        header, metadata = safetensors_header(files.checkpoint, "checkpoint")
        try:
            check_gemma(metadata, gemma_folder_config(files.gemma), files.gemma)
        except CheckpointError as e:
            raise LtxError(str(e)) from None
        if Path(files.gemma).is_dir() and not any(k.startswith("text_embedding_projection.") for k in header):
            raise LtxError(
                f"{files.checkpoint} holds no text projection (text_embedding_projection.*) and --gemma-root "
                f"{files.gemma} is a folder; LTX-2.5 ships it in the packed text-encoder file "
                "(text_encoders/gemma4-*.safetensors): pass that file as --gemma-root"
            )
    if not enhance:
        return
    if files.enhancer is None:
        if files.gemma_kind == "gemma4_unified":
            raise LtxError(
                "--enhance-prompt: LTX-2.5's Gemma 4 encoder cannot generate text; pass "
                f"--prompt-enhancer-gemma-root PATH|REPO with a Gemma 3 instruct folder ({GEMMA3_REPO})"
            )
        return
    root = Path(files.enhancer)
    option = f"--prompt-enhancer-gemma-root {root}"
    try:
        kind = json.loads((root / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        raise LtxError(
            f"{option} has no readable config.json; pass a Gemma 3 instruct folder ({GEMMA3_REPO})"
        ) from None
    if kind not in ("gemma3", "gemma3_text"):
        raise LtxError(
            f"{option} is model_type {kind!r}; prompt enhancement runs on a Gemma 3 instruct folder ({GEMMA3_REPO})"
        )
    shards = sorted(root.glob("model*.safetensors"))
    if not any(root.glob("tokenizer*")) or not shards:
        raise LtxError(
            f"{option} lacks the tokenizer files or model*.safetensors; copy the whole Gemma 3 folder"
        )
    for shard in shards:
        safetensors_header(shard, "enhancer Gemma weights")


def _component_shapes(files: Any) -> None:
    """Build each component from its config and check the checkpoint's shapes against it (lazy: cheap)."""
    from ltx.model.transformer import load_transformer
    from ltx.video.upsampler import load_upsampler
    from ltx.weights.loader import CheckpointError

    try:
        load_transformer(str(files.checkpoint))
        load_upsampler(str(files.upsampler))
    except CheckpointError as e:
        raise LtxError(f"{e}; is this the right file for this model?") from None


def lora_reference_scale(path: str | Path, option: str = "--lora") -> int:
    """An IC-LoRA's `reference_downscale_factor` metadata (1 when absent), as the reference reads it."""
    _, metadata = safetensors_header(_existing_file(path, option), option)
    value = metadata.get("reference_downscale_factor", "1")
    try:
        scale = int(value)
    except (TypeError, ValueError):
        raise LtxError(f"{option} {path}: reference_downscale_factor {value!r} is not an integer") from None
    if scale < 1:
        raise LtxError(f"{option} {path}: reference_downscale_factor {scale} must be >= 1")
    return scale


def lora_file(path: str | Path, shapes: dict[str, tuple[int, ...]], option: str = "--lora") -> None:
    """A LoRA's header: lora_A/lora_B pairs whose product fits a weight of the checkpoint."""
    p = _existing_file(path, option)
    header, _ = safetensors_header(p, f"{option}")
    _float_weights(header, p, option)
    pairs: dict[str, dict[str, tuple[int, ...]]] = {}
    for key, info in header.items():
        for prefix in ("model.diffusion_model.", "diffusion_model."):
            if key.startswith(prefix):
                key = key[len(prefix) :]
                break
        for part in ("A", "B"):
            if key.endswith(f".lora_{part}.weight"):
                pairs.setdefault(key[: -len(f".lora_{part}.weight")], {})[part] = tuple(info["shape"])
    if not pairs:
        raise LtxError(f"{option} {path} has no lora_A/lora_B weights; is it a LoRA for LTX-2?")
    for module, ab in sorted(pairs.items()):
        if set(ab) != {"A", "B"}:
            raise LtxError(
                f"{option} {path}: {module} has no lora_{'B' if 'A' in ab else 'A'}.weight; the file is incomplete"
            )
        a, b = ab["A"], ab["B"]
        w = shapes.get(f"model.diffusion_model.{module}.weight")
        if w is None:
            raise LtxError(
                f"{option} {path}: the model has no weight {module}.weight; is the LoRA for another model?"
            )
        if len(a) != 2 or len(b) != 2 or b[1] != a[0] or (b[0], a[1]) != tuple(w):
            raise LtxError(
                f"{option} {path}: {module} has lora_B {b} @ lora_A {a}, which does not fit the weight "
                f"{tuple(w)}; is the LoRA for another model?"
            )


def auto_duration(value, files) -> None:
    """--auto-duration MIN MAX: seconds, 0 < MIN <= MAX, on a model with a duration head (LTX-2.5)."""
    lo, hi = value
    for name, v in (("MIN", lo), ("MAX", hi)):
        if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise LtxError(f"--auto-duration {name} {v!r} must be a number of seconds > 0 (e.g. 1 20)")
    if lo > hi:
        raise LtxError(f"--auto-duration MIN {lo:g} must be <= MAX {hi:g} (seconds)")
    if files.duration_head is None:
        raise LtxError(
            f"--auto-duration: {files.label or files.name} has no duration head to predict the duration from the "
            "prompt (LTX-2.5 has one); pass --num-frames"
        )
