"""Goldens for the IC-LoRA pipeline (ltx_pipelines/ic_lora.py) and the tiny IC-LoRA, float32 on CPU
(make_goldens.py protocol).

The tiny IC-LoRA (ic_lora.safetensors): rank 4 on the tiny transformer's attention projections, metadata
reference_downscale_factor 2 (read back by the reference's own _read_lora_reference_downscale_factor).

`run` rebuilds ICLoraPipeline's flow from its pieces (its class hard-codes bf16 and CUDA calls): the prompt
-> stage 1 at half size with the IC-LoRA fused (float32, golden_pipeline._fuse_lora_f32), DISTILLED_SIGMA_VALUES,
one pass per step, conditionings from the pipeline's own ICLoraPipeline._create_conditionings (images by
combined_image_conditionings, then the reference video by load_video_conditioning at the stage-1 size / 2,
the encoder, VideoConditionByReferenceLatent, and ConditioningItemAttentionStrengthWrapper with the mask of
ic_lora._load_mask_video + _downsample_mask_to_latent) -> upsample -> stage 2 with the plain model (the
reference's stage-2 ledger has no LoRA), the images again at full size, no reference tokens -> decode.
Two runs:
  a  an image at frame 0, the reference video (strength 0.9) and a mask video (attention strength 0.7),
     both stages;
  b  the reference video only (strength 1.0, no attention mask), --skip-stage-2: stage 1 is decoded;
  c  two reference videos (the reference at 1.0, the mask video at 0.6) and the mask (0.8), --skip-stage-2.
The videos (H.264, made with golden_encode_video.make_video) are saved as bytes: ref_mp4, mask_mp4.

Saved per run ("a." / "b."): init.positions, init.denoise_mask, init.attention_mask (a only), init.tokens
(the appended reference tokens); stage1_video, stage1_audio; a also upsampled, stage2_video, stage2_audio;
video_f16 (frames [::4], rows and columns [::4]), mel, waveform_every4; noise.<stream>; image0; a.mask_pixels_every4
(the loaded mask, (F, H, W), rows and columns [::4]), a.mask_latent (its latent-grid weights times the strength).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np

PROMPT = "a red fox trots through fresh snow"
HEIGHT, WIDTH, NUM_FRAMES, FPS = 128, 256, 17, 24.0
NOISE_SEED = 5678
RANK, SCALE = 4, 2
REF = (13, 72, 100)  # frames, height, width of the reference video (cut to 9 frames by the encoder)
MASK = (9, 40, 60)
RUNS = {"a": dict(refs=(("ref", 0.9),), mask_strength=0.7, image=True, skip_stage_2=False),
        "b": dict(refs=(("ref", 1.0),), mask_strength=None, image=False, skip_stage_2=True),
        "c": dict(refs=(("ref", 1.0), ("mask", 0.6)), mask_strength=0.8, image=False, skip_stage_2=True)}  # fmt: skip
_ATTN = re.compile(
    r"^model\.diffusion_model\.(transformer_blocks\.\d+\.(?:attn1|attn2)\.(?:to_q|to_k|to_v|to_out\.0))\.weight$"
)


def contribute(variant: str) -> dict:
    import golden_transformer

    tensors = {}
    for k, shape in golden_transformer.contribute(variant)["model.safetensors"]["tensors"].items():
        if (m := _ATTN.match(k)) and len(shape) == 2:
            tensors[f"diffusion_model.{m.group(1)}.lora_A.weight"] = [RANK, shape[1]]
            tensors[f"diffusion_model.{m.group(1)}.lora_B.weight"] = [shape[0], RANK]
    meta = {"reference_downscale_factor": str(SCALE)}
    return {"ic_lora.safetensors": {"metadata": meta, "tensors": tensors, "dtype": "BF16"}}


def run(variant: str, model_dir: Path) -> dict[str, np.ndarray]:
    import torch
    from golden_encode_video import make_video
    from golden_keyframes import decoded, initial_state, loop, make_image, setup
    from golden_pipeline import _fuse_lora_f32, _injected_noiser, _Noise
    from ltx_core.components.diffusion_steps import EulerDiffusionStep
    from ltx_core.model.upsampler import upsample_video
    from ltx_core.types import VideoPixelShape
    from ltx_pipelines import ic_lora
    from ltx_pipelines.utils.args import ImageConditioningInput
    from ltx_pipelines.utils.constants import DISTILLED_SIGMA_VALUES, STAGE_2_DISTILLED_SIGMA_VALUES
    from ltx_pipelines.utils.helpers import (
        combined_image_conditionings,
        denoise_audio_video,
        simple_denoising_func,
    )
    from PIL import Image

    model_dir = Path(model_dir)
    lora_path = model_dir / "ic_lora.safetensors"
    assert ic_lora._read_lora_reference_downscale_factor(str(lora_path)) == SCALE
    ledger, components, (ctx,) = setup(model_dir, [PROMPT])
    dtype, device = torch.float32, torch.device("cpu")
    encoder = ledger.video_encoder()
    ic_model = ledger.transformer()
    _fuse_lora_f32(ic_model, lora_path, 1.0)
    plain = ledger.transformer()
    # the pipeline object for its _create_conditionings: no model is built by __new__
    pipe = ic_lora.ICLoraPipeline.__new__(ic_lora.ICLoraPipeline)
    pipe.dtype, pipe.device, pipe.reference_downscale_factor = dtype, device, SCALE
    stepper = EulerDiffusionStep()
    s1 = VideoPixelShape(batch=1, frames=NUM_FRAMES, width=WIDTH // 2, height=HEIGHT // 2, fps=FPS)
    s2 = VideoPixelShape(batch=1, frames=NUM_FRAMES, width=WIDTH, height=HEIGHT, fps=FPS)
    out: dict[str, np.ndarray] = {"image0": make_image(7, 50, 90)}
    with tempfile.TemporaryDirectory() as tmp:
        ref, mask, img = (str(Path(tmp) / n) for n in ("ref.mp4", "mask.mp4", "image0.png"))
        make_video(ref, *REF, seed=11)
        make_video(mask, *MASK, seed=12, grey=True)
        Image.fromarray(out["image0"]).save(img)
        out["ref_mp4"] = np.frombuffer(Path(ref).read_bytes(), np.uint8).copy()
        out["mask_mp4"] = np.frombuffer(Path(mask).read_bytes(), np.uint8).copy()
        videos = {"ref": ref, "mask": mask}
        for name, cfg in RUNS.items():
            images = [ImageConditioningInput(img, 0, 1.0, crf=0)] if cfg["image"] else []
            pixel_mask, strength = None, 1.0
            if cfg["mask_strength"] is not None:
                strength = cfg["mask_strength"]
                pixel_mask = ic_lora._load_mask_video(mask, s1.height, s1.width, NUM_FRAMES)
                out[f"{name}.mask_pixels_every4"] = pixel_mask[0, 0, :, ::4, ::4].float().numpy()
            conds = pipe._create_conditionings(
                images=images, video_conditioning=[(videos[v], st) for v, st in cfg["refs"]], height=s1.height,
                width=s1.width, num_frames=NUM_FRAMES, video_encoder=encoder,
                conditioning_attention_strength=strength, conditioning_attention_mask=pixel_mask,
            )  # fmt: skip
            if pixel_mask is not None:
                out[f"{name}.mask_latent"] = conds[-1].attention_mask.float().numpy()
            state, n = initial_state(s1, conds, components)
            out[f"{name}.init.positions"] = state.positions.numpy()
            out[f"{name}.init.denoise_mask"] = state.denoise_mask.numpy()
            out[f"{name}.init.tokens"] = state.clean_latent[:, n:].numpy()
            if state.attention_mask is not None:
                out[f"{name}.init.attention_mask"] = state.attention_mask.numpy()
            noise = _Noise(NOISE_SEED + ord(name))
            streams = ["stage1_video", "stage1_audio"] + (
                [] if cfg["skip_stage_2"] else ["stage2_video", "stage2_audio"]
            )
            noiser, queue = _injected_noiser(noise, streams)
            v, a = denoise_audio_video(
                output_shape=s1, conditionings=conds, noiser=noiser,
                sigmas=torch.tensor(DISTILLED_SIGMA_VALUES, dtype=torch.float32), stepper=stepper,
                denoising_loop_fn=loop(simple_denoising_func(ctx.video_encoding, ctx.audio_encoding, ic_model)),
                components=components, dtype=dtype, device=device,
            )  # fmt: skip
            out[f"{name}.stage1_video"], out[f"{name}.stage1_audio"] = v.latent.numpy(), a.latent.numpy()
            if not cfg["skip_stage_2"]:
                up = upsample_video(
                    latent=v.latent[:1], video_encoder=encoder, upsampler=ledger.spatial_upsampler()
                )
                s2sig = torch.tensor(STAGE_2_DISTILLED_SIGMA_VALUES, dtype=torch.float32)
                conds2 = combined_image_conditionings(images, s2.height, s2.width, encoder, dtype, device)
                v, a = denoise_audio_video(
                    output_shape=s2, conditionings=conds2, noiser=noiser, sigmas=s2sig, stepper=stepper,
                    denoising_loop_fn=loop(simple_denoising_func(ctx.video_encoding, ctx.audio_encoding, plain)),
                    components=components, dtype=dtype, device=device, noise_scale=s2sig[0],
                    initial_video_latent=up, initial_audio_latent=a.latent,
                )  # fmt: skip
                out[f"{name}.upsampled"] = up.numpy()
                out[f"{name}.stage2_video"], out[f"{name}.stage2_audio"] = v.latent.numpy(), a.latent.numpy()
            assert not queue
            dec = decoded(ledger, v.latent, a.latent, noise)
            frames = dec.pop("video_f16").view(np.float16)  # decoded() keeps rows/cols [::2]: take [::4]
            out[f"{name}.video_f16"] = np.ascontiguousarray(frames[:, ::2, ::2]).view(np.uint16)
            out.update({f"{name}.{k}": v_ for k, v_ in dec.items()})
            out.update({f"{name}.noise.{s}": arr for s, arr in noise.arrays.items()})
    return out
