"""The pipeline in one place: user options -> the graph of stage nodes (keys known before anything runs)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from cache.store import Store
from stages import condition, decode, decode_audio, denoise, encode, mux, refine, upsample, vocode
from stages.framework import LtxError, Node
from stages.models import ModelFiles, resolve_model

PIPELINES = ("distilled", "dev", "dev-two-stage")
TINY_DEFAULTS = {"height": 256, "width": 384, "num_frames": 25}
TINY_LORA = "tiny:distilled_lora"


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
    images: list[tuple[str, int, float]] = field(default_factory=list)
    loras: list[tuple[str, float]] = field(default_factory=list)
    distilled_lora: tuple[str, float] | None = None
    model: str | None = None
    pipeline: str | None = None
    tiling: str | None = None
    image_crf: int | None = None
    enhance_prompt: bool | None = None
    memory_budget: float | None = None  # GB; streams transformer blocks when needed (never changes the bits)

    def merged(self, stored: dict) -> Options:
        """These options over a run's stored ones (CLI values win; None falls back to the run's)."""
        base = {f.name: stored.get(f.name) for f in dataclasses.fields(self) if f.name in stored}
        mine = {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, [])}
        out = Options(**{**base, **mine})
        out.images = [tuple(i) for i in out.images]
        out.loras = [tuple(x) for x in out.loras]
        out.distilled_lora = tuple(out.distilled_lora) if out.distilled_lora else None
        return out


def _validate(o: Options, two_stage: bool) -> None:
    from ltx import constants as C

    if o.prompt is None or not o.prompt.strip():
        raise LtxError('--prompt is empty; describe the video to generate, e.g. --prompt "a fox in the snow"')
    C.validate_resolution(o.height, o.width, two_stage)
    C.validate_frames(o.num_frames)
    C.validate_fps(o.frame_rate)
    if not 0 <= o.seed < 2**32:
        raise LtxError(f"--seed {o.seed} is out of range; use an integer from 0 to {2**32 - 1}")
    for name in ("cfg_scale", "audio_cfg_scale", "stg_scale"):
        v = getattr(o, name)
        if v is not None and not math.isfinite(v):
            raise LtxError(f"--{name.replace('_', '-')} {v} must be a finite number")
    for path, frame, strength in o.images:
        C.validate_strength(strength)
        if not 0 <= frame < o.num_frames:
            raise LtxError(f"--image {path} frame {frame} is outside the video (0..{o.num_frames - 1})")
        if not Path(path).is_file():
            raise LtxError(f"--image {path} does not exist")
    for path, strength in o.loras + ([o.distilled_lora] if o.distilled_lora else []):
        if not math.isfinite(strength):
            raise LtxError(f"--lora {path} strength {strength} must be a finite number")
        if not Path(path).is_file() and path != TINY_LORA:
            raise LtxError(f"--lora {path} does not exist")


def resolve_options(o: Options, files: ModelFiles) -> Options:
    """Fill defaults (the reference's, or small ones for the tiny model) and validate."""
    from ltx import constants as C

    o = dataclasses.replace(o)
    o.pipeline = o.pipeline or "distilled"
    if o.pipeline not in PIPELINES:
        raise LtxError(f"--pipeline {o.pipeline!r} is unknown; choose one of {', '.join(PIPELINES)}")
    two_stage = o.pipeline != "dev"
    params = C.params_for_version(files.version)
    tiny = files.tiny_variant is not None
    default_hw = C.TWO_STAGE_RESOLUTION if two_stage else C.ONE_STAGE_RESOLUTION
    # `is None`, not `or`: an explicit 0 is bad input to reject, not a request for the default
    o.height = o.height if o.height is not None else (TINY_DEFAULTS["height"] if tiny else default_hw[0])
    o.width = o.width if o.width is not None else (TINY_DEFAULTS["width"] if tiny else default_hw[1])
    o.num_frames = (
        o.num_frames
        if o.num_frames is not None
        else (TINY_DEFAULTS["num_frames"] if tiny else C.DEFAULT_NUM_FRAMES)
    )
    o.frame_rate = o.frame_rate if o.frame_rate is not None else params.frame_rate
    o.seed = o.seed if o.seed is not None else params.seed
    o.image_crf = o.image_crf if o.image_crf is not None else C.DEFAULT_IMAGE_CRF
    o.tiling = o.tiling or ("default" if two_stage else "none")
    if o.pipeline == "distilled" and o.steps is not None:
        raise LtxError(
            "--steps does not apply to --pipeline distilled (fixed 8 + 3 steps); use --pipeline dev to choose"
        )
    if o.pipeline != "distilled":
        o.steps = o.steps if o.steps is not None else params.num_inference_steps
        C.validate_steps(o.steps)
        if o.negative_prompt is None:
            from ltx.text.encoder import DEFAULT_NEGATIVE_PROMPT

            o.negative_prompt = DEFAULT_NEGATIVE_PROMPT
    if o.pipeline == "dev-two-stage" and o.distilled_lora is None and tiny:
        o.distilled_lora = (TINY_LORA, 1.0)  # the tiny model's own distilled LoRA, created with it
    if o.pipeline == "dev-two-stage" and o.distilled_lora is None:
        raise LtxError(
            "--pipeline dev-two-stage needs --distilled-lora PATH [STRENGTH] (the distilled LoRA file)"
        )
    from stages import validate

    validate.options(o, files, two_stage)  # bad input fails here, before anything is written
    _validate(o, two_stage)
    return o


def _guiders(o: Options, files: ModelFiles) -> tuple[dict, dict]:
    from ltx import constants as C

    p = C.params_for_version(files.version)
    video, audio = p.video_guider, p.audio_guider
    if files.tiny_variant is not None:  # the tiny transformer has 2 blocks: perturb its last one
        video, audio = (
            dataclasses.replace(video, stg_blocks=(1,)),
            dataclasses.replace(audio, stg_blocks=(1,)),
        )
    if o.cfg_scale is not None:
        video = dataclasses.replace(video, cfg_scale=o.cfg_scale)
    if o.audio_cfg_scale is not None:
        audio = dataclasses.replace(audio, cfg_scale=o.audio_cfg_scale)
    if o.stg_scale is not None:
        video, audio = (dataclasses.replace(g, stg_scale=o.stg_scale) for g in (video, audio))
    as_dict = lambda g: {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(g).items()}  # noqa: E731
    return as_dict(video), as_dict(audio)


def build(o: Options, store: Store) -> tuple[dict[str, Node], Options, ModelFiles]:
    """The named nodes of the pipeline for options `o`, in order."""
    from ltx.diffusion import schedulers

    files = resolve_model(o.model, store)
    o = resolve_options(o, files)
    ckpt = {"checkpoint": files.checkpoint_digest}
    dit = {"checkpoint": files.transformer_digest}  # differs from ckpt only for a quantized conversion
    text = {**ckpt, "gemma": files.gemma_digest}
    two_stage = o.pipeline != "dev"
    h1, w1 = (o.height // 2, o.width // 2) if two_stage else (o.height, o.width)

    def lora_file(path: str) -> str:
        return str(files.checkpoint.parent / "distilled_lora.safetensors") if path == TINY_LORA else path

    def lora_digest(path: str) -> str:
        return files.lora_digest() if path == TINY_LORA else store.digest(path)

    user_loras = tuple((lora_file(p), float(s)) for p, s in o.loras)
    lora_ext = {f"lora{i}": lora_digest(p) for i, (p, _) in enumerate(o.loras)}
    stream = False
    if o.memory_budget is not None:
        from stages.info_cmd import budget_needs_streaming

        try:
            stream = budget_needs_streaming(
                files.ready(), o.height, o.width, o.num_frames, o.frame_rate, two_stage, o.memory_budget
            )
        except ValueError as e:
            raise LtxError(str(e)) from None
    rt = {"files": files, "loras": user_loras, "stream": stream}
    frames = tuple((int(f), float(s)) for _, f, s in o.images)
    images_ext = {f"image{i}": store.digest(p) for i, (p, _, _) in enumerate(o.images)}
    nodes: dict[str, Node] = {}
    # 1. text: the prompt (and the negative prompt when guidance needs it) -> contexts
    # the reference seeds enhancement with the generation seed in the TI2Vid pipelines
    enhance = o.seed if o.enhance_prompt else None
    nodes["encode"] = Node(
        encode.STAGE, encode.Params(o.prompt.strip(), enhance), externals=text, runtime=files
    )
    if o.pipeline != "distilled":
        nodes["encode_negative"] = Node(
            encode.STAGE, encode.Params(o.negative_prompt.strip()), externals=text, runtime=files
        )
    # 2. images -> conditioning latents at the stage-1 resolution
    img_rt = {"files": files, "paths": [p for p, _, _ in o.images]}
    if o.images:
        nodes["condition"] = Node(
            condition.STAGE,
            condition.Params(h1, w1, o.image_crf, len(o.images)),
            externals={**ckpt, **images_ext},
            runtime=img_rt,
        )
    # 3. stage 1: noise -> video and audio latents (guided for dev pipelines)
    if o.pipeline == "distilled":
        sigmas, vg, ag = schedulers.distilled_sigmas(1), None, None
    else:
        (vg, ag), sigmas = _guiders(o, files), schedulers.ltx2_sigmas(o.steps)
    inputs = {"context": nodes["encode"]}
    if "encode_negative" in nodes:
        inputs["negative"] = nodes["encode_negative"]
    if o.images:
        inputs["images"] = nodes["condition"]
    nodes["denoise"] = Node(
        denoise.STAGE,
        denoise.Params(
            h1,
            w1,
            o.num_frames,
            float(o.frame_rate),
            o.seed,
            tuple(sigmas),
            vg,
            ag,
            frames,
            tuple(s for _, s in user_loras),
        ),
        inputs,
        {**dit, **lora_ext},
        rt,
    )
    final = nodes["denoise"]
    if two_stage:
        # 4. x2 latent upsampler
        nodes["upsample"] = Node(
            upsample.STAGE,
            upsample.Params(),
            {"latents": final},
            {**ckpt, "upsampler": files.upsampler_digest},
            files,
        )
        # 5. stage 2: refine at full resolution (distilled sigmas; the distilled LoRA for dev-two-stage)
        named2 = list(o.loras) + ([o.distilled_lora] if o.distilled_lora else [])
        loras2 = tuple((lora_file(p), float(s)) for p, s in named2)
        ext2 = {**dit, **{f"lora{i}": lora_digest(p) for i, (p, _) in enumerate(named2)}}
        inputs2 = {"latents": nodes["upsample"], "stage1": final, "context": nodes["encode"]}
        if o.images:
            nodes["condition_full"] = Node(
                condition.STAGE,
                condition.Params(o.height, o.width, o.image_crf, len(o.images)),
                externals={**ckpt, **images_ext},
                runtime=img_rt,
            )
            inputs2["images"] = nodes["condition_full"]
        nodes["refine"] = Node(
            refine.STAGE,
            refine.Params(
                o.height,
                o.width,
                o.num_frames,
                float(o.frame_rate),
                o.seed,
                tuple(schedulers.distilled_sigmas(2)),
                frames,
                tuple(s for _, s in loras2),
            ),
            inputs2,
            ext2,
            {"files": files, "loras": loras2, "stream": stream},
        )
        final = nodes["refine"]
    # 6. decode: video latents -> frames (tiled), audio latents -> mel -> waveform
    nodes["decode"] = Node(decode.STAGE, decode.Params(o.tiling, o.seed), {"latents": final}, ckpt, files)
    nodes["decode_audio"] = Node(decode_audio.STAGE, decode_audio.Params(), {"latents": final}, ckpt, files)
    nodes["vocode"] = Node(vocode.STAGE, vocode.Params(), {"mel": nodes["decode_audio"]}, ckpt, files)
    # 7. mux: H.264 + AAC
    nodes["mux"] = Node(
        mux.STAGE, mux.Params(float(o.frame_rate)), {"video": nodes["decode"], "audio": nodes["vocode"]}
    )
    return nodes, o, files
