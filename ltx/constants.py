"""Pipeline constants of the reference (ltx_pipelines/utils/constants.py) and the input rules.

No mlx here: importing this module is cheap. Validation raises ValueError naming the value and the fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

# Distilled schedules, terminal 0 included (used as float32: see schedulers.distilled_sigmas).
DISTILLED_SIGMAS = (1.0, 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725, 0.421875, 0.0)
STAGE_2_DISTILLED_SIGMAS = (0.909375, 0.725, 0.421875, 0.0)
STAGE_2_NOISE_SCALE = 0.909375  # = STAGE_2_DISTILLED_SIGMAS[0]

DEFAULT_SEED = 10
DEFAULT_FPS = 24.0
DEFAULT_NUM_FRAMES = 121
DEFAULT_IMAGE_CRF = 33
LTX_2_4_IMAGE_CRF = 18  # from LTX-2.4 on: the CRF the model was trained with (1.2.0's detect_params)
DEFAULT_LORA_STRENGTH = 1.0
HQ_DISTILLED_LORA_STRENGTHS = (0.25, 0.5)  # stage 1, stage 2 of the HQ pipeline

# Default resolutions (height, width).
ONE_STAGE_RESOLUTION = (512, 768)
TWO_STAGE_RESOLUTION = (1024, 1536)  # stage 1 runs at half: 512 x 768
HQ_RESOLUTION = (1088, 1920)

VIDEO_SCALE_FACTORS = (8, 32, 32)  # time, height, width
VIDEO_LATENT_CHANNELS = 128
AUDIO_LATENT_CHANNELS = 8
AUDIO_MEL_BINS = 16
AUDIO_LATENTS_PER_SECOND = 16000 / 160 / 4  # 25.0

# VAE decoder timestep conditioning (only if the checkpoint has it).
DECODE_NOISE_SCALE = 0.025
DECODE_TIMESTEP = 0.05


@dataclass(frozen=True)
class GuiderParams:
    """MultiModalGuiderParams of the reference, one per modality.

    stg_blocks: transformer blocks whose self-attention the STG pass skips; None means all blocks
    (as in the reference), () means none.
    """

    cfg_scale: float = 1.0
    stg_scale: float = 0.0
    stg_blocks: tuple[int, ...] | None = ()
    rescale_scale: float = 0.0
    modality_scale: float = 1.0
    skip_step: int = 0

    def __post_init__(self) -> None:
        for name in ("cfg_scale", "stg_scale", "rescale_scale", "modality_scale"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"guidance {name} {v!r} must be a finite number")
        if not isinstance(self.skip_step, int) or self.skip_step < 0:
            raise ValueError(
                f"guidance skip_step {self.skip_step!r} must be an integer >= 0 (0 = never skip)"
            )
        if self.stg_blocks is not None:
            object.__setattr__(self, "stg_blocks", tuple(int(b) for b in self.stg_blocks))
            if any(b < 0 for b in self.stg_blocks):
                raise ValueError(f"guidance stg_blocks {self.stg_blocks} must be block indices >= 0")

    @classmethod
    def from_dict(cls, d: dict) -> GuiderParams:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


NO_GUIDANCE = GuiderParams()


@dataclass(frozen=True)
class PipelineParams:
    seed: int = DEFAULT_SEED
    stage_1_height: int = 512
    stage_1_width: int = 768
    num_frames: int = DEFAULT_NUM_FRAMES
    frame_rate: float = DEFAULT_FPS
    num_inference_steps: int = 40
    default_image_crf: int = DEFAULT_IMAGE_CRF
    video_guider: GuiderParams = field(
        default_factory=lambda: GuiderParams(3.0, 1.0, (29,), rescale_scale=0.7, modality_scale=3.0)
    )
    audio_guider: GuiderParams = field(
        default_factory=lambda: GuiderParams(7.0, 1.0, (29,), rescale_scale=0.7, modality_scale=3.0)
    )

    @property
    def stage_2_height(self) -> int:
        return 2 * self.stage_1_height

    @property
    def stage_2_width(self) -> int:
        return 2 * self.stage_1_width


LTX_2_PARAMS = PipelineParams()
LTX_2_3_PARAMS = replace(
    LTX_2_PARAMS,
    num_inference_steps=30,
    video_guider=replace(LTX_2_PARAMS.video_guider, stg_blocks=(28,)),
    audio_guider=replace(LTX_2_PARAMS.audio_guider, stg_blocks=(28,)),
)
LTX_2_3_HQ_PARAMS = PipelineParams(
    num_inference_steps=15,
    stage_1_height=1088 // 2,
    stage_1_width=1920 // 2,
    video_guider=GuiderParams(3.0, 0.0, (), rescale_scale=0.45, modality_scale=3.0),
    audio_guider=GuiderParams(7.0, 0.0, (), rescale_scale=1.0, modality_scale=3.0),
)


# 2.4 and 2.5 continue the 2.3 lineage (30 steps, STG block 28) with the trained image CRF
LTX_2_4_PARAMS = replace(LTX_2_3_PARAMS, default_image_crf=LTX_2_4_IMAGE_CRF)

# 1.2.0's default negative prompt (LTX-2.5's): 1.0.0's, led by the caption tags 2.5 was trained with
NEGATIVE_PROMPT_2_5_TAGS = (
    "has_subtitles, has_blurbox, transition from black, transition to black, speech_ending_short, "
)


def parse_model_version(version: str | None) -> tuple[int, ...]:
    """ltx-core's parse_model_version after detect_model_version's separator normalisation ("2.4-rc2" ->
    (2, 4)): the leading integer components, () for none (below every version)."""
    parts = []
    for part in str(version or "").replace("-", ".").split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


def params_for_version(model_version: str | None) -> PipelineParams:
    """The reference's detect_params: the params of the newest generation `model_version` is at or above
    (2.4 and later: LTX_2_4_PARAMS; 2.3: LTX_2_3_PARAMS; older or unset: LTX_2_PARAMS)."""
    v = parse_model_version(model_version)
    return LTX_2_4_PARAMS if v >= (2, 4) else LTX_2_3_PARAMS if v >= (2, 3) else LTX_2_PARAMS


def default_negative_prompt(model_version: str | None, base: str) -> str:
    """The negative prompt of the reference that made the model's goldens: 1.2.0's for LTX-2.5 on, else
    `base` (1.0.0's DEFAULT_NEGATIVE_PROMPT)."""
    return NEGATIVE_PROMPT_2_5_TAGS + base if parse_model_version(model_version) >= (2, 5) else base


def uses_ancestral_stage1(model_version: str | None) -> bool:
    """1.2.0's distilled pipeline samples stage 1 with Euler ancestral from LTX-2.5 on."""
    return parse_model_version(model_version) >= (2, 5)


def decodes_stage1_audio(model_version: str | None, pipeline: str) -> bool:
    """1.2.0's two-stage and HQ pipelines (LTX-2.5's reference) refine only the video in stage 2: stage 2
    still denoises the audio beside it, but the audio decoded is stage 1's (1.0.0 decodes stage 2's)."""
    return parse_model_version(model_version) >= (2, 5) and pipeline in ("dev-two-stage", "hq")


# ---------------------------------------------------------------------------------------------------
# Validation


def _nearest_multiples(value: int, divisor: int) -> str:
    lo = (value // divisor) * divisor
    hi = lo + divisor
    return f"{hi}" if lo <= 0 else f"{lo} or {hi}"


def validate_resolution(height: int, width: int, two_stage: bool) -> None:
    """H and W must be multiples of 64 for two-stage pipelines (stage 1 runs at half size), 32 otherwise."""
    divisor = 64 if two_stage else 32
    kind = "two-stage" if two_stage else "one-stage"
    for name, v in (("height", height), ("width", width)):
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"{name} {v!r} must be a positive integer")
        if v % divisor:
            raise ValueError(
                f"{name} {v} must be divisible by {divisor} for {kind} pipelines "
                f"(nearest valid: {_nearest_multiples(v, divisor)})"
            )


def nearest_valid_frames(num_frames: int) -> tuple[int, int]:
    """The valid counts 1 + 8k just below and just above `num_frames`."""
    lo = 1 + max(0, (num_frames - 1) // 8) * 8
    return lo, lo + 8


def validate_frames(num_frames: int) -> None:
    """Frame counts are 1 + 8k (the causal VAE encodes frame 0 alone, then groups of 8)."""
    if not isinstance(num_frames, int) or isinstance(num_frames, bool) or num_frames < 1:
        raise ValueError(
            f"num_frames {num_frames!r} must be a positive integer of the form 1 + 8k (e.g. 121)"
        )
    if (num_frames - 1) % 8:
        lo, hi = nearest_valid_frames(num_frames)
        raise ValueError(f"num_frames {num_frames} must be of the form 1 + 8k: use {lo} or {hi}")


def validate_steps(steps: int) -> None:
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps {steps!r} must be an integer >= 1")


def validate_fps(fps: float) -> None:
    if not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps {fps!r} must be a finite number > 0")


def validate_strength(strength: float) -> None:
    """Conditioning strength: 1.0 keeps the conditioning clean, 0.0 lets it be fully denoised."""
    if not isinstance(strength, (int, float)) or not math.isfinite(strength) or not 0.0 <= strength <= 1.0:
        raise ValueError(
            f"conditioning strength {strength!r} must be in [0, 1] (1.0 = keep the image exactly)"
        )


def audio_latent_frames(num_frames: int, fps: float) -> int:
    """Audio latent length for a video of `num_frames` at `fps`: round(num_frames / fps * 25)."""
    validate_fps(fps)
    return round(float(num_frames) / float(fps) * AUDIO_LATENTS_PER_SECOND)


def video_latent_shape(num_frames: int, height: int, width: int) -> tuple[int, int, int]:
    """(F', H', W') of the video latent: F' = (F - 1) // 8 + 1, H' = H / 32, W' = W / 32."""
    t, h, w = VIDEO_SCALE_FACTORS
    return (num_frames - 1) // t + 1, height // h, width // w
