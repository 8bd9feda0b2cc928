"""What a user can choose, its defaults, and every check of it: `resolve` runs once, while the pipeline
graph is built, before anything is computed or written to the cache.

Defaults are the reference's (ltx.constants), or small ones for the tiny model. Each check raises
`LtxError` with one line naming the bad value and the fix; files (images, LoRAs, weights) are probed
by stages/validate.py.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stages import validate
from stages.denoise import MAX_REFERENCES
from stages.framework import LtxError
from stages.models import TINY_IC_LORA, TINY_LORA, TINY_LORAS, ModelFiles

PIPELINES = ("distilled", "dev", "dev-two-stage", "keyframes", "ic-lora", "hq", "a2v")
DEV_PIPELINES = ("dev", "dev-two-stage", "keyframes", "hq", "a2v")  # guided stage 1 with a dev checkpoint
# audio guidance: a2v's audio is frozen and unguided (the reference's MultiModalGuiderParams())
A2V_UNUSED = ("audio_cfg_scale", "audio_stg_scale", "audio_stg_blocks", "audio_rescale_scale",
              "v2a_guidance_scale", "audio_skip_step")  # fmt: skip
# stage 2 fuses the distilled LoRA (hq: stage 1 too)
WITH_DISTILLED_LORA = ("dev-two-stage", "keyframes", "hq", "a2v")
# pipelines whose length is --num-frames (default 121; the tiny models' 25) even on a model with a duration
# head, as in the 1.2.0 reference (their pipelines have no DurationPredictor): why, for --auto-duration's error
FIXED_LENGTH = {
    "a2v": "the video is made for --audio-path",
    "keyframes": "the keyframes' frames set its timing",
    "ic-lora": "the reference video sets its length",
}
# ltx retake / extend: RetakePipeline's guided one stage (dev) or its distilled variant; its CLI's defaults
RETAKE_PIPELINES = ("dev", "distilled")
RETAKE_SEED, RETAKE_STEPS = 42, 40  # retake.py's --seed default; __call__'s num_inference_steps (any version)
LATENT_STAGES = ("retake", "refine", "denoise")  # a run's final video + audio latents: the first it has
TINY_DEFAULTS = {"height": 256, "width": 384, "num_frames": 25}
SEED_RANGE = 2**32
GUIDANCE_SCALES = {  # Options field -> its option (the reference's name)
    "cfg_scale": "--video-cfg-guidance-scale",
    "audio_cfg_scale": "--audio-cfg-guidance-scale",
    "stg_scale": "--stg-scale",
    "video_stg_scale": "--video-stg-guidance-scale",
    "audio_stg_scale": "--audio-stg-guidance-scale",
    "video_rescale_scale": "--video-rescale-scale",
    "audio_rescale_scale": "--audio-rescale-scale",
    "a2v_guidance_scale": "--a2v-guidance-scale",
    "v2a_guidance_scale": "--v2a-guidance-scale",
}


@dataclass
class Options:
    """Everything a user can choose; None means "the pipeline's default"."""

    prompt: str | None = None
    negative_prompt: str | None = None
    height: int | None = None
    width: int | None = None
    num_frames: int | None = None
    frame_rate: float | None = None
    seed: int | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    audio_cfg_scale: float | None = None
    stg_scale: float | None = None
    video_stg_scale: float | None = None
    audio_stg_scale: float | None = None
    video_stg_blocks: tuple[int, ...] | None = None
    audio_stg_blocks: tuple[int, ...] | None = None
    video_rescale_scale: float | None = None
    audio_rescale_scale: float | None = None
    a2v_guidance_scale: float | None = None
    v2a_guidance_scale: float | None = None
    video_skip_step: int | None = None
    audio_skip_step: int | None = None
    images: list[tuple[str, int, float]] = field(default_factory=list)
    loras: list[tuple[str, float]] = field(default_factory=list)
    distilled_lora: tuple[str, float] | None = None
    model: str | None = None
    checkpoint_path: str | None = None  # overrides of the files chosen from --model (stages/models.py)
    spatial_upsampler_path: str | None = None
    gemma_root: str | None = None
    prompt_enhancer_gemma_root: str | None = None  # a separate Gemma 3 for --enhance-prompt (LTX-2.5)
    # split checkpoints: one file per component (stages.models.SPLIT_OPTIONS), over --model's own
    transformer_path: str | None = None
    text_encoder_path: str | None = None
    video_vae_path: str | None = None
    audio_vae_path: str | None = None
    duration_head_path: str | None = None
    # (MIN, MAX) seconds: predict the duration from the prompt (LTX-2.5's duration head); the default when
    # --num-frames is omitted on a model that has one
    auto_duration: tuple[float, float] | None = None
    pipeline: str | None = None
    tiling: str | None = None
    decoder: str | None = None  # conv | diffusion; None: the model's default (diffusion where it has one)
    image_crf: int | None = None
    enhance_prompt: bool | None = None
    memory_budget: float | None = None  # GB; streams transformer blocks when needed (never changes the bits)
    no_audio: bool | None = None  # video only: the mux takes no audio track, nothing decodes audio
    video_conditioning: list[tuple[str, float]] = field(default_factory=list)  # ic-lora: (REF.mp4, strength)
    conditioning_attention_mask: tuple[str, float] | None = None  # ic-lora: (MASK.mp4, attention strength)
    skip_stage_2: bool | None = None  # ic-lora: decode stage 1 (half resolution)
    audio_path: str | None = None  # a2v: the audio the video is generated for (frozen while denoising)
    audio_start_time: float | None = None  # a2v: seconds into --audio-path (default 0)
    audio_max_duration: float | None = None  # a2v: seconds read (default: the video's length)
    distilled_lora_strength_stage_1: float | None = None  # hq: the distilled LoRA in stage 1 (default 0.25)
    distilled_lora_strength_stage_2: float | None = None  # hq: and in stage 2 (default 0.5)
    source: str | None = None  # retake/extend: a run's final latents (artifact key) or a video file's path
    # retake/extend of a run whose audio is another artifact's (LTX-2.5's dev-two-stage, hq: stage 1's)
    source_audio: str | None = None
    start_time: float | None = None  # retake: the span regenerated, seconds
    end_time: float | None = None
    extend_seconds: float | None = None  # extend: seconds generated past the source's end
    keep_video: bool | None = None  # retake: the source's video kept whole, only the span's audio regenerated
    keep_audio: bool | None = None  # retake: the source's audio kept whole, only the span's video regenerated

    def merged(self, stored: dict) -> Options:
        """These options over a run's stored ones (CLI values win; None falls back to the run's)."""
        base = {f.name: stored.get(f.name) for f in dataclasses.fields(self) if f.name in stored}
        mine = {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, [])}
        out = Options(**{**base, **mine})
        out.images = [tuple(i) for i in out.images]
        out.loras = [tuple(x) for x in out.loras]
        out.distilled_lora = tuple(out.distilled_lora) if out.distilled_lora else None
        out.video_conditioning = [tuple(v) for v in out.video_conditioning]
        mask = out.conditioning_attention_mask
        out.conditioning_attention_mask = tuple(mask) if mask else None
        out.auto_duration = tuple(out.auto_duration) if out.auto_duration else None
        if "num_frames" in mine and "auto_duration" not in mine:
            out.auto_duration = None  # --num-frames on the command line replaces the run's predicted duration
        if "auto_duration" in mine and "num_frames" not in mine:
            out.num_frames = None
        for name in ("video_stg_blocks", "audio_stg_blocks"):
            value = getattr(out, name)
            setattr(out, name, None if value is None else tuple(value))
        return out

    @property
    def two_stage(self) -> bool:
        return self.pipeline != "dev" and self.source is None

    def split_paths(self) -> dict[str, str | None]:
        """The split-checkpoint options by option name (stages.models.resolve_model's `split`)."""
        return {
            "--transformer-path": self.transformer_path,
            "--text-encoder-path": self.text_encoder_path,
            "--video-vae-path": self.video_vae_path,
            "--audio-vae-path": self.audio_vae_path,
            "--duration-head-path": self.duration_head_path,
        }


def default_pipeline(o: Options) -> str:
    return o.pipeline or ("dev" if o.source is not None else "distilled")


def resolve(o: Options, files: ModelFiles) -> Options:
    """`o` with every default filled in, checked: bad input fails here, before anything is written."""
    from ltx import constants as C

    o = dataclasses.replace(o)
    o.pipeline = default_pipeline(o)
    if o.pipeline not in PIPELINES:
        raise LtxError(f"--pipeline {o.pipeline!r} is unknown; choose one of {', '.join(PIPELINES)}")
    if o.source is not None:
        _retake_defaults(o)
    params = C.LTX_2_3_HQ_PARAMS if o.pipeline == "hq" else C.params_for_version(files.version)
    tiny = files.tiny_variant is not None
    default_hw = C.TWO_STAGE_RESOLUTION if o.two_stage else C.ONE_STAGE_RESOLUTION
    if o.pipeline == "hq":
        default_hw = C.HQ_RESOLUTION
    # `is None`, not `or`: an explicit 0 is bad input to reject, not a request for the default
    o.height = o.height if o.height is not None else (TINY_DEFAULTS["height"] if tiny else default_hw[0])
    o.width = o.width if o.width is not None else (TINY_DEFAULTS["width"] if tiny else default_hw[1])
    if o.num_frames is not None and o.auto_duration is not None:
        raise LtxError(
            f"--num-frames {o.num_frames} and --auto-duration {' '.join(map(str, o.auto_duration))} both set the "
            "duration; pass one of them"
        )
    fixed = FIXED_LENGTH.get(
        o.pipeline
    )  # 1.2.0's a2v, keyframes and ic-lora take a frame count, never predict
    if fixed and o.num_frames is None and o.auto_duration is not None:
        raise LtxError(
            f"--auto-duration does not apply to --pipeline {o.pipeline} ({fixed}); "
            "pass --num-frames, or omit it for the default"
        )
    predict = not fixed and (o.auto_duration is not None or files.duration_head is not None)
    if o.num_frames is None and predict:
        from ltx.text.duration import AUTO_DURATION

        o.auto_duration = tuple(float(x) for x in (o.auto_duration or AUTO_DURATION))
        validate.auto_duration(o.auto_duration, files)
    elif o.num_frames is None and not fixed and C.parse_model_version(files.version) >= (2, 5):
        raise LtxError(
            f"{files.label or files.name} has no duration head to predict the duration from the prompt "
            "(LTX-2.5's model_patches/*duration-head*); pass --num-frames, or --duration-head-path FILE"
        )
    elif o.num_frames is None:
        o.num_frames = TINY_DEFAULTS["num_frames"] if tiny else C.DEFAULT_NUM_FRAMES
    o.frame_rate = o.frame_rate if o.frame_rate is not None else params.frame_rate
    o.seed = o.seed if o.seed is not None else params.seed
    # 18 from LTX-2.4, for hq too: the reference's ImageConditioner reads it from the checkpoint's version
    crf = C.params_for_version(files.version).default_image_crf
    o.image_crf = o.image_crf if o.image_crf is not None else crf
    o.tiling = o.tiling or ("default" if o.two_stage else "none")
    o.decoder = o.decoder or files.decoders[0]
    if o.pipeline == "distilled" and o.steps is not None:
        raise LtxError(
            "--steps does not apply to --pipeline distilled (fixed 8 + 3 steps); use --pipeline dev to choose"
        )
    if o.pipeline == "ic-lora" and o.steps is not None:
        raise LtxError("--steps does not apply to --pipeline ic-lora (distilled: fixed 8 + 3 steps)")
    if o.pipeline in DEV_PIPELINES:
        o.steps = o.steps if o.steps is not None else params.num_inference_steps
        if o.negative_prompt is None:
            from ltx.text.encoder import DEFAULT_NEGATIVE_PROMPT

            o.negative_prompt = C.default_negative_prompt(files.version, DEFAULT_NEGATIVE_PROMPT)
    two_stage_lora = o.pipeline in WITH_DISTILLED_LORA
    if two_stage_lora and o.distilled_lora is None and tiny:
        o.distilled_lora = (TINY_LORA, 1.0)  # the tiny model's own distilled LoRA, created with it
    elif two_stage_lora and o.distilled_lora is None and files.distilled_lora is not None:
        o.distilled_lora = (str(files.distilled_lora), C.DEFAULT_LORA_STRENGTH)  # the model folder's
    if two_stage_lora and o.distilled_lora is None:
        raise LtxError(
            f"--pipeline {o.pipeline} needs --distilled-lora PATH [STRENGTH] (the distilled LoRA file; "
            "the model folder has no single *distilled-lora* file)"
        )
    if o.pipeline == "ic-lora" and not o.loras and tiny and files.has_tiny_lora(TINY_IC_LORA):
        o.loras = [(TINY_IC_LORA, 1.0)]  # the tiny model's own IC-LoRA, created with it
    if o.pipeline == "ic-lora" and not o.loras:
        none = f"; the tiny-{files.tiny_variant} model has none of its own" if tiny else ""
        raise LtxError(
            f"--pipeline ic-lora needs --lora IC_LORA.safetensors [STRENGTH] (an IC-LoRA for this model{none})"
        )
    if o.pipeline == "ic-lora":
        o.skip_stage_2 = bool(o.skip_stage_2)
    _resolve_hq(o)
    _resolve_a2v(o)
    check(o, files)
    return o


def _resolve_hq(o: Options) -> None:
    """hq: the distilled LoRA at one strength per stage (the reference ignores --distilled-lora's own)."""
    from ltx import constants as C

    names = ("--distilled-lora-strength-stage-1", "--distilled-lora-strength-stage-2")
    given = (o.distilled_lora_strength_stage_1, o.distilled_lora_strength_stage_2)
    if o.pipeline != "hq":
        for name, v in zip(names, given, strict=True):
            if v is not None:
                raise LtxError(
                    f"{name} applies to --pipeline hq only (dev-two-stage: --distilled-lora PATH STRENGTH)"
                )
        return
    for name, v in zip(names, given, strict=True):
        validate.finite(name, v)
    s1, s2 = (v if v is not None else d for v, d in zip(given, C.HQ_DISTILLED_LORA_STRENGTHS, strict=True))
    o.distilled_lora_strength_stage_1, o.distilled_lora_strength_stage_2 = float(s1), float(s2)


def _resolve_a2v(o: Options) -> None:
    """a2v: --audio-path is required, read from --audio-start-time for --audio-max-duration seconds
    (default: the video's length, as the reference's CLI)."""
    given = [n for n, v in (("--audio-path", o.audio_path), ("--audio-start-time", o.audio_start_time),
                            ("--audio-max-duration", o.audio_max_duration)) if v is not None]  # fmt: skip
    if o.pipeline != "a2v":
        if given:
            raise LtxError(
                f"{', '.join(given)} applies to --pipeline a2v only (the audio the video is made for)"
            )
        return
    if o.audio_path is None:
        raise LtxError(
            "--pipeline a2v needs --audio-path FILE (wav, flac, mp3, or a video with an audio track)"
        )
    audio_guidance = [
        GUIDANCE_SCALES.get(n, "--" + n.replace("_", "-")) for n in A2V_UNUSED if getattr(o, n) is not None
    ]
    if audio_guidance:
        raise LtxError(
            f"{', '.join(audio_guidance)} do not apply to --pipeline a2v: its audio is given, not generated "
            "(the video's guidance options do)"
        )
    validate.finite("--audio-start-time", o.audio_start_time)
    validate.finite("--audio-max-duration", o.audio_max_duration)
    o.audio_start_time = float(o.audio_start_time or 0.0)
    if o.audio_start_time < 0:
        raise LtxError(f"--audio-start-time {o.audio_start_time:g} must be >= 0 (seconds into --audio-path)")
    if o.audio_max_duration is not None and o.audio_max_duration <= 0:
        raise LtxError(f"--audio-max-duration {o.audio_max_duration:g} must be > 0 (seconds)")


def audio_duration(o: Options) -> float:
    """Seconds read from --audio-path: --audio-max-duration, else the video's length (resolved options)."""
    return o.audio_max_duration if o.audio_max_duration is not None else o.num_frames / o.frame_rate


def _retake_defaults(o: Options) -> None:
    """ltx retake / extend: the reference retake CLI's defaults (seed 42, 40 steps, an empty negative
    prompt, default tiling); the size, frame count and rate are the source's (pipeline.build sets them)."""
    if o.pipeline not in RETAKE_PIPELINES:
        raise LtxError(
            f"--pipeline {o.pipeline} does not apply to ltx retake/extend; use dev (guided, the default) or "
            "distilled (the distilled checkpoint's 8 steps)"
        )
    o.seed = RETAKE_SEED if o.seed is None else o.seed
    if o.pipeline == "dev":
        o.steps = RETAKE_STEPS if o.steps is None else o.steps
        o.negative_prompt = "" if o.negative_prompt is None else o.negative_prompt
    o.tiling = o.tiling or "default"


# ---- retake / extend sources ----------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """What a retake or extend starts from: a run's final latents (an artifact key) or a video file."""

    ref: str
    kind: str  # "latents" or "video"
    num_frames: int
    height: int
    width: int
    frame_rate: float
    has_audio: bool


def find_source(store: Any, text: str) -> tuple[str, dict, str | None]:
    """SOURCE as given to `ltx retake` / `ltx extend` -> (Options.source, the source run's options,
    Options.source_audio): a video file, else a run name (its final latents' key; the audio latents the run
    decoded where they are another artifact's), else an artifact key or unique prefix."""
    from cache.errors import CacheError

    if Path(text).is_file():
        return str(Path(text)), {}, None
    try:
        info = store.load_run(text)
    except (CacheError, ValueError):
        info = None
    if info is not None:
        stages = info.get("stages", {})
        label = next((s for s in LATENT_STAGES if s in stages), None)
        if label is None:
            raise LtxError(f"run {text!r} has no video latents to retake; pass a run made by ltx generate")
        heard = info.get("recipes", {}).get("decode_audio", {}).get("inputs", {}).get("latents")
        return stages[label], info.get("options", {}), heard if heard not in (None, stages[label]) else None
    if re.fullmatch(r"[0-9a-fA-F]{4,64}", text):
        try:
            return store.resolve(text), {}, None
        except CacheError as e:
            raise LtxError(f"SOURCE {text}: {e}") from None
    if Path(text).suffix or "/" in text:
        raise LtxError(f"SOURCE {text} does not exist; pass a video file, a run name or an artifact key")
    raise LtxError(
        f"SOURCE {text!r} is not a video file, a run name or an artifact key; `ltx cache ls` lists runs"
    )


def source_audio(o: Options, store: Any) -> None:
    """Options.source_audio names a cached artifact with audio latents of the source's length."""
    ref = o.source_audio
    if not store.exists(ref):
        raise LtxError(
            f"the source's audio latents {ref[:8]} are not in the cache (removed); run the source again "
            "(ltx generate RUN), then retake it"
        )
    audio = store.manifest(ref).get("arrays", {}).get("audio_latent")
    video = store.manifest(o.source).get("arrays", {}).get("audio_latent")
    if audio is None or (video is not None and audio["shape"] != video["shape"]):
        raise LtxError(
            f"artifact {ref[:8]} holds no audio latents of the source's length; retake the run's key"
        )


def source(o: Options, store: Any) -> Source:
    """The checked source of a retake or extend (Options.source: a latents artifact key or a video file)."""
    ref = o.source
    if re.fullmatch(r"[0-9a-f]{64}", ref) and not Path(ref).is_file():
        if not store.exists(ref):
            raise LtxError(
                f"the source latents {ref[:8]} are not in the cache (removed, or their run did not finish); "
                "run the source again (ltx generate RUN), then retake it"
            )
        m = store.manifest(ref)
        arrays = m.get("arrays", {})
        if m.get("stage") not in LATENT_STAGES or not {"video_latent", "audio_latent"} <= set(arrays):
            raise LtxError(
                f"artifact {ref[:8]} is a {m.get('stage')} artifact; retake and extend take a run's final "
                f"video and audio latents ({', '.join(LATENT_STAGES)})"
            )
        _, _, f, h, w = arrays["video_latent"]["shape"]
        fps = float(m["params"]["frame_rate"])
        return Source(ref, "latents", 1 + 8 * (f - 1), 32 * h, 32 * w, fps, True)
    fps, n, width, height, has_audio = validate.source_video(ref, "SOURCE")
    if (n - 1) % 8:
        cut = 1 + (n - 1) // 8 * 8
        raise LtxError(
            f"SOURCE {ref} has {n} frames; the model's grid needs 1 + 8k: cut it to {cut} "
            f"(ffmpeg -i {ref} -frames:v {cut} OUT.mp4)"
        )
    if width % 32 or height % 32 or max(width, height) > validate.MAX_PIXELS:
        fit = f"{min(width // 32 * 32, validate.MAX_PIXELS)}x{min(height // 32 * 32, validate.MAX_PIXELS)}"
        raise LtxError(
            f"SOURCE {ref} is {width}x{height}; the model's grid needs width and height divisible by 32 "
            f"(at most {validate.MAX_PIXELS}): crop or resize it, e.g. to {fit}"
        )
    return Source(ref, "video", n, height, width, fps, has_audio)


def span(o: Options, src: Source) -> tuple[float, float, int]:
    """(start, end, output frames): --start-time/--end-time of a retake, or the span past the end of an
    extend (--seconds, rounded to whole latent frames of 8 frames)."""
    fps, duration = src.frame_rate, src.num_frames / src.frame_rate
    if o.extend_seconds is not None:
        validate.finite("--seconds", o.extend_seconds)
        step = 8 / fps
        if o.extend_seconds <= 0 or round(o.extend_seconds / step) < 1:
            raise LtxError(
                f"--seconds {o.extend_seconds:g} must add at least one latent frame (8 frames = {step:.3f} s "
                f"at {fps:g} fps); pass e.g. --seconds 2"
            )
        total = src.num_frames + 8 * round(o.extend_seconds / step)
        return duration, total / fps, total
    start, end = o.start_time, o.end_time
    if start is None or end is None:
        raise LtxError("ltx retake needs --start-time S and --end-time E (seconds: the span to regenerate)")
    validate.finite("--start-time", start)
    validate.finite("--end-time", end)
    if start < 0:
        raise LtxError(f"--start-time {start:g} must be >= 0 (seconds into the video)")
    if end <= start:
        raise LtxError(f"--end-time {end:g} must be after --start-time {start:g}: the span is empty")
    if start >= duration:
        raise LtxError(
            f"--start-time {start:g} is past the end of the video ({duration:.3f} s: {src.num_frames} frames "
            f"at {fps:g} fps); choose a span inside it"
        )
    return float(start), float(end), src.num_frames


def regenerated(o: Options, src: Source) -> tuple[bool, bool]:
    """(video, audio): the streams whose span a retake regenerates (the reference's regenerate_video and
    regenerate_audio); --keep-video / --keep-audio keep one whole."""
    if not (o.keep_video or o.keep_audio):
        return True, True
    flags = (("--keep-video", o.keep_video), ("--keep-audio", o.keep_audio))
    given = " and ".join(name for name, on in flags if on)
    if o.extend_seconds is not None:
        raise LtxError(f"{given} applies to ltx retake only; ltx extend generates both video and audio")
    if o.keep_video and o.keep_audio:
        raise LtxError(
            "--keep-video and --keep-audio together leave nothing to regenerate; drop one (--keep-video "
            "regenerates the span's audio, --keep-audio its video)"
        )
    if o.keep_audio and not src.has_audio:
        raise LtxError(
            f"--keep-audio: SOURCE {src.ref} has no audio track to keep; drop --keep-audio (its audio is then "
            "generated whole) or pass a video with audio"
        )
    return not o.keep_video, not o.keep_audio


def check(o: Options, files: Any) -> None:
    """Every check of resolved options (defaults filled in) and the files they name."""
    validate.prompt(o.prompt)
    if o.num_frames is not None or o.auto_duration is None:
        validate.frames(o.num_frames)
    validate.resolution(o.height, o.width, o.two_stage, scale=files.upsampler_scale if o.two_stage else 2.0)
    if not isinstance(o.seed, int) or not 0 <= o.seed < SEED_RANGE:
        raise LtxError(f"--seed {o.seed} is out of range; use an integer from 0 to {SEED_RANGE - 1}")
    validate.finite("--frame-rate", o.frame_rate)
    if o.frame_rate is not None and o.frame_rate <= 0:
        raise LtxError(f"--frame-rate {o.frame_rate} must be > 0 (e.g. 24)")
    if o.steps is not None:
        validate.steps(o.steps)
    for name, option in GUIDANCE_SCALES.items():
        validate.finite(option, getattr(o, name))
    for m in ("video", "audio"):
        skip = getattr(o, f"{m}_skip_step")
        if skip is not None and (not isinstance(skip, int) or skip < 0):
            raise LtxError(f"--{m}-skip-step {skip} must be an integer >= 0 (0 = guide every step)")
        blocks = getattr(o, f"{m}_stg_blocks") or ()
        if any(b < 0 for b in blocks):
            raise LtxError(f"--{m}-stg-blocks {' '.join(map(str, blocks))}: block indices must be >= 0")
    if o.pipeline == "keyframes" and not o.images:
        raise LtxError(
            "--pipeline keyframes needs at least one --image PATH FRAME STRENGTH (e.g. --image a.png 0 1.0 "
            f"--image b.png {o.num_frames - 1} 1.0)"
        )
    for path, frame, s in o.images:
        validate.strength(f"--image {path} strength", s)
        validate.image_file(path)
        if o.num_frames is None and frame > 0:
            raise LtxError(
                f"--image {path} frame {frame}: a conditioning frame after 0 needs --num-frames (the predicted "
                "duration is known only after the prompt is encoded)"
            )
        if o.num_frames is not None and not 0 <= frame < o.num_frames:
            raise LtxError(f"--image {path} frame {frame} is outside the video (0..{o.num_frames - 1})")
    validate.tiling(o.tiling)
    validate.decoder(o.decoder, o.tiling, files)
    validate.crf("--image-crf", o.image_crf)
    if o.memory_budget is not None:
        validate.finite("--memory-budget", o.memory_budget)
        if o.memory_budget <= 0:
            raise LtxError(f"--memory-budget {o.memory_budget} must be > 0 (GB, e.g. 24)")
    validate.model_files(files)
    validate.text_files(files, bool(o.enhance_prompt))
    if o.audio_path is not None:
        audio_length(o)
    loras = list(o.loras)
    tiny_lora = o.distilled_lora is not None and o.distilled_lora[0] == TINY_LORA and files.tiny_variant
    if o.distilled_lora is not None and not tiny_lora:
        loras.append(tuple(o.distilled_lora))
    loras = [(p, s) for p, s in loras if not (p in TINY_LORAS and files.tiny_variant)]
    if loras:
        shapes = validate.checkpoint_shapes(files)
        for path, s in loras:
            validate.finite(f"--lora {path} strength", s)
            validate.lora_file(path, shapes)
    check_ic_lora(o, files)


def reference_scale(o: Options, files: Any) -> int:
    """The reference videos' downscale factor: the IC-LoRAs' `reference_downscale_factor` (one value)."""
    scale = 1
    for path, _ in o.loras:
        if path in TINY_LORAS and files.tiny_variant is not None:  # from the manifest: nothing is created
            s = int(files.tiny_lora_metadata(path).get("reference_downscale_factor", 1))
        else:
            s = validate.lora_reference_scale(path)
        if s != 1 and scale not in (1, s):
            raise LtxError(
                f"--lora {path} has reference_downscale_factor {s} but another LoRA has {scale}; "
                "IC-LoRAs with different reference scales cannot be combined"
            )
        scale = s if s != 1 else scale
    return scale


def check_ic_lora(o: Options, files: Any) -> None:
    """--video-conditioning, --conditioning-attention-mask and --skip-stage-2 (ic-lora only), the videos
    they name, and the reference size the IC-LoRA asks for."""
    if o.pipeline != "ic-lora":
        for given, option in (
            (o.video_conditioning, "--video-conditioning"),
            (o.conditioning_attention_mask, "--conditioning-attention-mask"),
            (o.skip_stage_2, "--skip-stage-2"),
        ):
            if given:
                raise LtxError(f"{option} applies to --pipeline ic-lora only (this run is {o.pipeline})")
        return
    if not o.video_conditioning:
        raise LtxError(
            "--pipeline ic-lora needs a reference video: --video-conditioning REF.mp4 STRENGTH (e.g. 1.0)"
        )
    if len(o.video_conditioning) > MAX_REFERENCES:
        raise LtxError(
            f"--video-conditioning is given {len(o.video_conditioning)} times; at most {MAX_REFERENCES} a run"
        )
    scale = reference_scale(o, files)
    num, den = validate.upsampler_ratio(files.upsampler_scale)  # stage 1's size, as pipeline.build sizes it
    h1, w1 = o.height * den // num, o.width * den // num
    if h1 % scale or w1 % scale or (h1 // scale) % 32 or (w1 // scale) % 32:
        raise LtxError(
            f"--height {o.height} --width {o.width}: the IC-LoRA's reference videos are encoded at "
            f"{h1 // scale}x{w1 // scale} (half size / reference_downscale_factor {scale}), which is not a "
            f"multiple of 32; use a height and width divisible by {64 * scale}"
        )
    ref_frames = []
    for path, s in o.video_conditioning:
        validate.strength(f"--video-conditioning {path} strength", s)
        _, frames, _, _ = validate.video_file(path, "--video-conditioning")
        ref_frames.append(1 + (min(frames, o.num_frames) - 1) // 8 * 8)
    if o.conditioning_attention_mask is not None:
        path, s = o.conditioning_attention_mask
        validate.strength(f"--conditioning-attention-mask {path} strength", s)
        _, frames, _, _ = validate.video_file(path, "--conditioning-attention-mask")
        f_pix = min(frames, o.num_frames)
        for ref in ref_frames:
            f_lat = 1 + (ref - 1) // 8
            if f_lat > 1 and (f_pix == 1 or (f_pix - 1) % (f_lat - 1)):
                raise LtxError(
                    f"--conditioning-attention-mask {path}: its {f_pix} frames do not fit a reference video of "
                    f"{ref} frames ({f_lat} latent frames); use a mask of {ref} frames"
                )


def audio_length(o: Options) -> None:
    """--audio-path decodes, and what is read from it covers the video (the reference cuts the encoded
    audio to the video's latent frames and fails on fewer)."""
    from ltx.audio.mel import latent_frames
    from ltx.constants import audio_latent_frames

    duration = audio_duration(o)
    n, rate = validate.audio_file(o.audio_path, "--audio-path", o.audio_start_time, duration)
    need = audio_latent_frames(o.num_frames, o.frame_rate)
    if latent_frames(n, rate) < need:
        seconds = (need - 1) / 25  # 640 samples at 16 kHz per latent frame after the first
        limit = "" if duration >= o.num_frames / o.frame_rate else (
            f" (--audio-max-duration {o.audio_max_duration:g})")  # fmt: skip
        raise LtxError(
            f"--audio-path {o.audio_path} gives {n / rate:.3f} s of audio from {o.audio_start_time:g} s{limit}; "
            f"{o.num_frames} frames at {o.frame_rate:g} fps need at least {seconds:.3f} s: pass a longer file, "
            "an earlier --audio-start-time, or fewer --num-frames"
        )
