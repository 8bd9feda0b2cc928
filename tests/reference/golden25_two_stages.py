"""Golden for a whole tiny LTX-2.5 dev-two-stage run with the 1.2.0 reference (make_goldens.py protocol), float32.

TI2VidTwoStagesPipeline hard-codes bfloat16, so `run` drives its __call__ step by step with the same official
blocks in float32: the Gemma 4 text encoder on [prompt, 1.2.0's DEFAULT_NEGATIVE_PROMPT] in one batch and the
embeddings processor (golden25_text's builders), stage 1 by DiffusionStage with FactoryGuidedDenoiser over
LTX2Scheduler().execute(steps=STEPS) (Euler, the stage's default loop), the guider params
detect_params(transformer) gives the 2.5 checkpoint (LTX_2_4_PARAMS) with the STG block moved to the tiny
transformer's last block (as stages/pipeline.py::_guiders does), VideoUpsampler, stage 2 by a DiffusionStage
with the 2.5 distilled LoRA (loras/distilled_lora.safetensors, strength 1.0) over STAGE_2_DISTILLED_SIGMAS
with SimpleDenoiser; the video decoded by the conv VideoDecoder (untiled), and the audio of STAGE 1 by
AudioDecoder: 1.2.0's two-stage pipeline discards stage 2's audio.

LoRA fusion: the reference fuses through its bf16_fuse_rule (delta in bf16, result cast to the weight's bf16);
here the same Builder path runs with a float32 FuseRule (delta (B * strength) @ A in float32 added to the
float32 weight), the arithmetic of ltx/weights/lora.py.

Noise is injected as golden25_pipeline does (numpy RandomState, token layout (B, T, C)): the GaussianNoiser's
draws stage1_video, stage1_audio, stage2_video, stage2_audio.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tiny25

PROMPT = "a red fox trots through fresh snow"
HEIGHT, WIDTH, NUM_FRAMES, FPS = 64, 128, 9, 24.0
STEPS = 3
NOISE_SEED = 2526
LORA_STRENGTH = 1.0
STG_BLOCKS = [1]  # the tiny transformer has 2 blocks: STG perturbs its last one
STREAMS = ["stage1_video", "stage1_audio", "stage2_video", "stage2_audio"]


def contribute(variant: str) -> dict:
    return {}


def _float32_fuse_rule():
    import torch
    from ltx_core.loader.fuse_loras import FuseRule

    def fuse(key, weight, deltas, model_sd):
        return {key: weight.to(torch.float32) + deltas}

    return FuseRule(aggregation_dtype=torch.float32, fuse_fn=fuse)


def _fused_weights(plain, with_lora) -> int:
    import torch

    a = dict(plain._build_transformer().named_parameters())
    b = dict(with_lora._build_transformer().named_parameters())
    assert a.keys() == b.keys()
    for name, t in list(a.items()) + list(b.items()):
        assert t.device.type != "meta" and t.dtype == torch.float32, name
    return sum(not torch.equal(a[k], b[k]) for k in a)


def run(variant: str, model_dir: Path) -> dict[str, np.ndarray]:
    import dataclasses

    import golden25_text
    import torch
    from golden25_pipeline import _injected_noiser, _Noise, decoded_outputs
    from ltx_core.components.guiders import create_multimodal_guider_factory
    from ltx_core.components.schedulers import LTX2Scheduler
    from ltx_core.loader import LTXV_LORA_COMFY_RENAMING_MAP, LoraPathStrengthAndSDOps
    from ltx_pipelines.utils.blocks import DiffusionStage, VideoUpsampler
    from ltx_pipelines.utils.constants import DEFAULT_NEGATIVE_PROMPT, STAGE_2_DISTILLED_SIGMAS, detect_params
    from ltx_pipelines.utils.denoisers import FactoryGuidedDenoiser, SimpleDenoiser
    from ltx_pipelines.utils.types import ModalitySpec

    assert variant == "2.5", variant
    model_dir = Path(model_dir)
    f = {k: str(model_dir / getattr(tiny25, k)) for k in ("TRANSFORMER", "VIDEO_VAE", "VIDEO_VAE_CONV")}
    f |= {k: str(model_dir / getattr(tiny25, k)) for k in ("AUDIO_VAE", "UPSAMPLER", "DISTILLED_LORA")}
    torch.set_grad_enabled(False)
    dtype, device = torch.float32, torch.device("cpu")
    noise = _Noise(NOISE_SEED)
    out: dict[str, np.ndarray] = {}

    # text: PromptEncoder([prompt, negative_prompt]) -- one batched Gemma forward, then the processor
    enc_builder, proc_builder = golden25_text._builders(
        str(model_dir / tiny25.TEXT_ENCODER_DIR), (f["TRANSFORMER"],)
    )
    encoder = enc_builder.build(device=device, dtype=dtype).eval()
    raw = encoder.encode([PROMPT, DEFAULT_NEGATIVE_PROMPT])
    del encoder
    processor = proc_builder.build(device=device, dtype=dtype).eval()
    ctx_p, ctx_n = (processor.process_hidden_states(hs, mask) for hs, mask in raw)
    del processor
    for tag, c in (("", ctx_p), ("_negative", ctx_n)):
        out[f"context.video{tag}_rows16"] = c.video_encoding[0, ::16].numpy()
        out[f"context.audio{tag}_rows16"] = c.audio_encoding[0, ::16].numpy()

    # the CLI's defaults for this checkpoint (resolve_cli_params -> detect_params): 2.4+ -> LTX_2_4_PARAMS
    params = detect_params(f["TRANSFORMER"])
    assert params.num_inference_steps == 30 and params.default_image_crf == 18, params
    guiders = {
        m: dataclasses.replace(g, stg_blocks=STG_BLOCKS)
        for m, g in (("video", params.video_guider_params), ("audio", params.audio_guider_params))
    }
    for m, g in guiders.items():
        out[f"guider.{m}"] = np.array(
            [g.cfg_scale, g.stg_scale, g.rescale_scale, g.modality_scale], np.float32
        )

    class Float32Stage(DiffusionStage):  # the reference builds in the file's dtype (bf16) and fuses in bf16
        def _build_transformer(self, *, device=None, **kwargs):
            self._transformer_builder = self._transformer_builder.with_fuse_rule(_float32_fuse_rule())
            return super()._build_transformer(device=device, dtype=self._dtype, **kwargs)

    lora = LoraPathStrengthAndSDOps(f["DISTILLED_LORA"], LORA_STRENGTH, LTXV_LORA_COMFY_RENAMING_MAP)
    stage_1 = Float32Stage.from_checkpoint(f["TRANSFORMER"], dtype, device)
    stage_2 = Float32Stage.from_checkpoint(f["TRANSFORMER"], dtype, device, loras=(lora,))
    fused = _fused_weights(stage_1, stage_2)
    assert fused == 136 // 2, fused  # every lora_A/lora_B pair of the tiny LoRA changed its weight
    noiser, queue = _injected_noiser(noise)
    v_p, a_p, v_n, a_n = (
        ctx_p.video_encoding,
        ctx_p.audio_encoding,
        ctx_n.video_encoding,
        ctx_n.audio_encoding,
    )

    sigmas = LTX2Scheduler().execute(steps=STEPS).to(dtype=torch.float32)
    out["stage1_sigmas"] = sigmas.numpy()
    v1, a1 = stage_1(
        denoiser=FactoryGuidedDenoiser(
            v_context=v_p,
            a_context=a_p,
            video_guider_factory=create_multimodal_guider_factory(
                params=guiders["video"], negative_context=v_n
            ),
            audio_guider_factory=create_multimodal_guider_factory(
                params=guiders["audio"], negative_context=a_n
            ),
        ),
        sigmas=sigmas,
        noiser=noiser,
        width=WIDTH // 2,
        height=HEIGHT // 2,
        frames=NUM_FRAMES,
        fps=FPS,
        video=ModalitySpec(context=v_p),
        audio=ModalitySpec(context=a_p),
    )
    up = VideoUpsampler(f["VIDEO_VAE"], f["UPSAMPLER"], dtype, device)(v1.latent[:1])
    s2 = STAGE_2_DISTILLED_SIGMAS.to(torch.float32)
    v2, a2 = stage_2(
        denoiser=SimpleDenoiser(v_context=v_p, a_context=a_p),
        sigmas=s2,
        noiser=noiser,
        width=WIDTH,
        height=HEIGHT,
        frames=NUM_FRAMES,
        fps=FPS,
        video=ModalitySpec(context=v_p, noise_scale=s2[0].item(), initial_latent=up),
        audio=ModalitySpec(context=a_p, noise_scale=s2[0].item(), initial_latent=a1.latent),
    )
    assert not queue, queue
    # the audio of stage 1: 1.2.0's two-stage pipeline discards stage 2's
    return out | decoded_outputs(f, dtype, device, (v1, a1, up, v2, a2), a1.latent, noise, seed=10)
