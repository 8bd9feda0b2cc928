"""Multi-modal guidance (the reference's MultiModalGuider): which forward passes a step needs, and
how their x0 predictions combine.

pred = cond + (cfg - 1)(cond - uncond) + stg (cond - perturbed) + (modality - 1)(cond - isolated),
then, if rescale r != 0, pred *= r * std(cond) / std(pred) + (1 - r) (unbiased std over the whole tensor).

Perturbations are plain data; the transformer implements them:
- skip_*_self_attn_blocks: in those blocks the self-attention output is replaced by its V projection
  pass-through (residual and gate still applied); None means every block, () none;
- skip_a2v / skip_v2a: the audio-to-video / video-to-audio cross-attention branch is removed in every block.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ltx import backend  # noqa: F401  (sets up the BLAS before mlx)

# isort: split

import mlx.core as mx  # noqa: E402

from ltx.constants import GuiderParams
from ltx.diffusion.conditioning import LatentState


@dataclass(frozen=True)
class Perturbation:
    skip_video_self_attn_blocks: tuple[int, ...] | None = ()
    skip_audio_self_attn_blocks: tuple[int, ...] | None = ()
    skip_a2v: bool = False
    skip_v2a: bool = False

    def skips_video_self_attn(self, block: int) -> bool:
        b = self.skip_video_self_attn_blocks
        return b is None or block in b

    def skips_audio_self_attn(self, block: int) -> bool:
        b = self.skip_audio_self_attn_blocks
        return b is None or block in b


ISOLATE_MODALITIES = Perturbation(skip_a2v=True, skip_v2a=True)


@dataclass(frozen=True)
class GuidancePass:
    """One transformer forward (both streams, batch 1).

    negative: use the negative text contexts. video_enabled / audio_enabled False: that stream is
    carried through the blocks unchanged (the reference's Modality.enabled, used by skip_step).
    """

    kind: str  # "cond" | "uncond" | "perturbed" | "isolated"
    negative: bool = False
    perturbation: Perturbation | None = None
    video_enabled: bool = True
    audio_enabled: bool = True


@dataclass(frozen=True)
class GuidancePlan:
    passes: tuple[GuidancePass, ...]
    reuse_video: bool  # skip_step: reuse the previous step's video prediction
    reuse_audio: bool


def should_skip(params: GuiderParams, step: int) -> bool:
    return params.skip_step != 0 and step % (params.skip_step + 1) != 0


def _on(value: float, neutral: float) -> bool:
    return not math.isclose(value, neutral)


def plan(video: GuiderParams, audio: GuiderParams | None, step: int) -> GuidancePlan:
    """The forward passes of one step, in the reference's order: cond, uncond, perturbed, isolated."""
    audio = audio or GuiderParams()
    rv, ra = should_skip(video, step), should_skip(audio, step)
    if rv and ra:
        return GuidancePlan((), True, True)
    en = dict(video_enabled=not rv, audio_enabled=not ra)
    passes = [GuidancePass("cond", **en)]
    if _on(video.cfg_scale, 1.0) or _on(audio.cfg_scale, 1.0):
        passes.append(GuidancePass("uncond", negative=True))
    sv, sa = _on(video.stg_scale, 0.0), _on(audio.stg_scale, 0.0)
    if sv or sa:
        p = Perturbation(
            skip_video_self_attn_blocks=video.stg_blocks if sv else (),
            skip_audio_self_attn_blocks=audio.stg_blocks if sa else (),
        )
        passes.append(GuidancePass("perturbed", perturbation=p, **en))
    if _on(video.modality_scale, 1.0) or _on(audio.modality_scale, 1.0):
        passes.append(GuidancePass("isolated", perturbation=ISOLATE_MODALITIES, **en))
    return GuidancePlan(tuple(passes), rv, ra)


def _r(x: mx.array, dtype: mx.Dtype) -> mx.array:
    return x if dtype == mx.float32 else x.astype(dtype).astype(mx.float32)


def _std(x: mx.array) -> mx.array:
    return mx.sqrt(mx.var(x, ddof=1))


def combine(
    params: GuiderParams,
    cond: mx.array,
    uncond: mx.array | None = None,
    perturbed: mx.array | None = None,
    isolated: mx.array | None = None,
    round_dtype: mx.Dtype | None = None,
) -> mx.array:
    """MultiModalGuider.calculate for one modality; a pass not run is None (its term must then be off).

    Each operation is computed in float32 and rounded to round_dtype (default: cond's dtype), as the
    reference computes this in the prediction dtype.
    """
    rd = round_dtype or cond.dtype
    c = cond.astype(mx.float32)
    pred = c
    terms = (
        ("cfg_scale", params.cfg_scale - 1, uncond),
        ("stg_scale", params.stg_scale, perturbed),
        ("modality_scale", params.modality_scale - 1, isolated),
    )
    for name, scale, other in terms:
        if other is None:
            if _on(scale, 0.0):
                raise ValueError(f"guidance {name} {getattr(params, name)} needs its pass, which is missing")
            other = mx.zeros_like(c)  # the reference substitutes 0.0
        delta = _r(c - other.astype(mx.float32), rd)
        pred = _r(pred + _r(mx.array(scale, mx.float32) * delta, rd), rd)
    r = params.rescale_scale
    if r != 0:
        factor = _r(_std(c) / _std(pred), rd)
        factor = _r(_r(mx.array(r, mx.float32) * factor, rd) + mx.array(1 - r, mx.float32), rd)
        pred = _r(pred * factor, rd)
    return pred.astype(cond.dtype)


# ---------------------------------------------------------------------------------------------------
# Sigma-binned parameters (MultiModalGuiderFactory.from_dict)

GuiderSchedule = tuple[tuple[float, GuiderParams], ...]


def guider_schedule(by_sigma: dict[float, GuiderParams] | GuiderParams) -> GuiderSchedule:
    """Bins keyed by their sigma upper bound; plain params give one bin for every sigma."""
    if isinstance(by_sigma, GuiderParams):
        return ((math.inf, by_sigma),)
    if not by_sigma:
        raise ValueError("sigma-binned guidance needs at least one (sigma, params) entry")
    return tuple(sorted(by_sigma.items(), key=lambda kv: kv[0], reverse=True))


def params_at(schedule: GuiderSchedule, sigma: float) -> GuiderParams:
    """The bin (k_{i+1}, k_i] holding sigma; a sigma above every bound uses the highest bin."""
    above = [k for k, _ in schedule if k >= sigma]
    key = above[-1] if above else schedule[0][0]
    return next(p for k, p in schedule if k == key)


# ---------------------------------------------------------------------------------------------------
# A denoise function for the samplers

# forward(video, audio, sigma, guidance_pass) -> (x0_video, x0_audio): one transformer pass
Forward = Callable[
    [LatentState, "LatentState | None", float, GuidancePass], tuple[mx.array, "mx.array | None"]
]


class GuidedDenoiser:
    """denoise(video, audio, sigma, step) for the loops: runs the planned passes and combines them.

    Keeps the last prediction for skip_step (checkpoint it with the latents to resume a skipping run).
    """

    def __init__(
        self,
        forward: Forward,
        video: GuiderParams | dict[float, GuiderParams],
        audio: GuiderParams | dict[float, GuiderParams] | None = None,
        round_dtype: mx.Dtype | None = None,
    ):
        self.forward = forward
        self.video = guider_schedule(video)
        self.audio = guider_schedule(audio if audio is not None else video)
        self.round_dtype = round_dtype
        self.last: tuple[mx.array | None, mx.array | None] = (None, None)

    def __call__(self, video: LatentState, audio: LatentState | None, sigma: float, step: int):
        pv, pa = params_at(self.video, sigma), params_at(self.audio, sigma)
        pl = plan(pv, pa, step)
        if (pl.reuse_video and self.last[0] is None) or (
            pl.reuse_audio and audio is not None and self.last[1] is None
        ):
            raise ValueError(
                f"skip_step reuses the prediction before step {step}, which this denoiser has not seen: "
                "resume skipping runs at a step that is a multiple of skip_step + 1"
            )
        out = {p.kind: self.forward(video, audio, sigma, p) for p in pl.passes}

        def pick(i: int, params: GuiderParams, reuse: bool):
            if reuse:
                return self.last[i]
            got: Sequence = [out[k][i] if k in out else None for k in ("uncond", "perturbed", "isolated")]
            return combine(params, out["cond"][i], *got, round_dtype=self.round_dtype)

        dv = pick(0, pv, pl.reuse_video)
        da = None if audio is None else pick(1, pa, pl.reuse_audio)
        self.last = (dv, da)
        return dv, da
