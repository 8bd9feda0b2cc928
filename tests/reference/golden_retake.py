"""Goldens for the retake pipeline (ltx_pipelines/retake.py's RetakePipeline, 1.0.0) and its masks, float32 on
CPU (make_goldens.py protocol).

The pipeline class itself runs: its dtype set to float32, its ModelLedger the tiny model's in float32 on the
CPU, torch.cuda.synchronize a no-op, its GaussianNoiser replaced by golden_pipeline's injected noiser
(streams stage1_video, stage1_audio, in the reference's draw order) and its video decode by golden_pipeline's
float tiled decode (TilingConfig.default(), the "decoder" noise for a timestep-conditioned decoder). It is
called as its CLI calls it: negative_prompt "" (the CLI passes none), num_inference_steps STEPS (the CLI
leaves 40; 3 here), the video/audio guider params of golden_pipeline.GUIDERS (detect_params' LTX-2 values
with the STG block on the tiny transformer's last), regenerate_video/audio True but in keep_audio/keep_video.

Cases, each "<case>.": source, then masks (video_mask (1, T) and audio_mask (1, T_a), the denoise masks of
the noised states), the final latents (video_latent, audio_latent, unpatchified), video_f16_every4 (every
4th frame of the float decode, stored as float16 bits as golden_pipeline does), mel, waveform_every4 (every
4th sample), sigmas, and the noise drawn ("<case>.noise.<stream>").
  file       an .mp4 (FRAMES frames of HEIGHT x WIDTH at FPS, H.264, with an AAC track of AUDIO_SECONDS,
             shorter than the video: the reference pads its latent with zeros), made here with PyAV and
             stored as bytes ("file.mp4"): the reference's own metadata probe, load_video_conditioning,
             decode_audio_from_file and _encode_audio_for_retake run on it. Span FILE_SPAN.
  run        a generated run's latents (ours: no decode/encode round trip): _encode_video_for_retake and
             _encode_audio_for_retake return the given latents ("run.source_video", "run.source_audio",
             seeded normals) and the metadata is the run's. Span RUN_SPAN.
  distilled  the same source with distilled=True (DISTILLED_SIGMA_VALUES, one conditional pass, no negative
             prompt). Span RUN_SPAN.
  extend     this project's extension (no reference class): the run's latents zero-padded by EXTEND_FRAMES
             pixel frames (EXTEND_FRAMES / 8 latent frames; the audio latent to the new length), the span
             [FRAMES / FPS, (FRAMES + EXTEND_FRAMES) / FPS): the same pipeline with the same masking.
  keep_audio the run case with regenerate_audio=False (`ltx retake --keep-audio`), and keep_video with
             regenerate_video=False (`--keep-video`): the run's noise (not stored again), masks, sigmas
             and latents only (no decodes, to keep the file small).

masks: TemporalRegionMask.apply_to on fresh states of MASK_SHAPES for each span of MASK_SPANS (edges on
frame and audio-token boundaries included): "masks.<shape>.<i>.video" / ".audio".
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from golden_pipeline import GUIDERS, NOISE_SEED, PROMPT, _decode_video, _f16_bits, _injected_noiser, _Noise

HEIGHT, WIDTH, FRAMES, FPS = 64, 128, 25, 24.0
STEPS = 3
AUDIO_SECONDS, AUDIO_RATE = 0.8, 44100
FILE_SPAN = (0.2, 0.5)
RUN_SPAN = (0.4, 0.7)
EXTEND_FRAMES = 16
SOURCE_SEED = 99
# (name, latent frames, latent height, latent width, fps, audio latent frames)
MASK_SHAPES = (("a", 4, 2, 4, 24.0, 26), ("b", 6, 1, 2, 25.0, 41), ("c", 3, 1, 1, 30.0, 14))
MASK_SPANS = (
    (0.0, 0.1),
    (0.4, 0.7),
    (1 / 24, 9 / 24),  # exactly on 24 fps latent-frame boundaries
    (0.36, 0.52),  # exactly on audio-token boundaries (0.04 s)
    (0.33, 0.34),
    (0.0, 0.0),  # regenerate nothing (regenerate_* False)
    (0.75, 100.0),
    (9 / 25, 17 / 25),
)


def contribute(variant: str) -> dict:
    return {}


def make_av_file(path: str, frames: int, height: int, width: int, fps: float, audio_seconds: float) -> None:
    """Smooth moving patterns, H.264 yuv420p, and a stereo AAC track (two tones and a little noise; none if
    audio_seconds is 0), with PyAV."""
    import av

    rng = np.random.RandomState(5)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = rng.uniform(0, 6.28, size=3)
    t = np.arange(round(AUDIO_RATE * audio_seconds)) / AUDIO_RATE
    tone = np.stack([0.4 * np.sin(2 * np.pi * 330 * t), 0.3 * np.sin(2 * np.pi * 550 * t + 1.0)])
    # with a little noise in every mel band: near log-mel's floor (-11.5) the reference's float32 mel is off
    # by up to 0.05 (a pure tone's empty bands), which says nothing about either side's encoder
    tone += rng.standard_normal(tone.shape) * 0.05
    pcm = np.round(np.clip(tone, -1, 1) * 32767).astype(np.int16)  # (2, N)
    with av.open(path, "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=int(fps), options={"crf": "18", "preset": "veryfast"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = container.add_stream("aac", rate=AUDIO_RATE, layout="stereo") if audio_seconds > 0 else None
        for i in range(frames):
            chans = [
                127.5 + 120 * np.sin(xx / (6 + 3 * c) + yy / (9 + c) + phase[c] + 0.5 * i) for c in range(3)
            ]
            img = np.stack(chans, axis=-1).clip(0, 255).astype(np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if audio is None:
            return
        frame = av.AudioFrame.from_ndarray(pcm.T.reshape(1, -1).copy(), format="s16", layout="stereo")
        frame.sample_rate = AUDIO_RATE
        for packet in audio.encode(frame):
            container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)


def _pipeline(model_dir: Path):
    import torch
    from golden_text import _shrink_gemma_config
    from ltx_core.model.transformer import attention as ref_attention
    from ltx_pipelines.retake import RetakePipeline
    from ltx_pipelines.utils.model_ledger import ModelLedger
    from ltx_pipelines.utils.types import PipelineComponents

    assert ref_attention.memory_efficient_attention is None
    _shrink_gemma_config()
    torch.set_grad_enabled(False)
    dtype, device = torch.float32, torch.device("cpu")
    pipe = RetakePipeline.__new__(RetakePipeline)
    pipe.device, pipe.dtype = device, dtype
    pipe.model_ledger = ModelLedger(
        dtype=dtype,
        device=device,
        checkpoint_path=str(model_dir / "model.safetensors"),
        gemma_root_path=str(model_dir / "gemma"),
    )
    pipe.pipeline_components = PipelineComponents(dtype=dtype, device=device)
    return pipe


def _call(pipe, path: str, span: tuple[float, float], noise: _Noise, distilled: bool = False, source=None,
          **regenerate):  # fmt: skip
    """Run pipe(...) with the noise injected; returns the captured masks, latents and decodes. `source`
    (fps, frames, width, height, video latent, audio latent) replaces the file's probe and encoders;
    `regenerate`: regenerate_video / regenerate_audio."""
    import ltx_pipelines.retake as R
    import torch
    from ltx_core.components.guiders import MultiModalGuiderParams
    from ltx_core.model.video_vae import TilingConfig

    got: dict[str, np.ndarray] = {}
    noiser, queue = _injected_noiser(noise, ["stage1_video", "stage1_audio"])
    saved = {n: getattr(R, n) for n in ("GaussianNoiser", "euler_denoising_loop", "vae_decode_video",
                                        "vae_decode_audio", "get_videostream_metadata",
                                        "_encode_video_for_retake", "_encode_audio_for_retake",
                                        "decode_audio_from_file")}  # fmt: skip
    loop = saved["euler_denoising_loop"]

    def capture_loop(sigmas, video_state, audio_state, stepper, denoise_fn):
        got["video_mask"] = video_state.denoise_mask[..., 0].numpy().copy()
        got["audio_mask"] = audio_state.denoise_mask[..., 0].numpy().copy()
        got["sigmas"] = sigmas.numpy().copy()
        return loop(sigmas=sigmas, video_state=video_state, audio_state=audio_state, stepper=stepper,
                    denoise_fn=denoise_fn)  # fmt: skip

    def decode_video(latent, decoder, tiling_config, generator):
        assert tiling_config == TilingConfig.default()
        got["video_latent"] = latent.numpy().copy()
        got["video_f16_every4"] = _f16_bits(_decode_video(decoder, latent, noise)[::4])
        return iter(())

    def decode_audio(latent, decoder, vocoder):
        got["audio_latent"] = latent.numpy().copy()
        mel = decoder(latent)
        got["mel"] = mel.numpy().copy()
        got["waveform_every4"] = vocoder(mel).squeeze(0).float().numpy()[:, ::4].copy()
        return None

    R.GaussianNoiser = lambda generator: noiser
    R.euler_denoising_loop = capture_loop
    R.vae_decode_video, R.vae_decode_audio = decode_video, decode_audio
    if source is not None:
        fps, frames, width, height, video_latent, audio_latent = source
        R.get_videostream_metadata = lambda p: (fps, frames, width, height)
        R._encode_video_for_retake = lambda **kw: torch.from_numpy(video_latent.copy())
        R._encode_audio_for_retake = lambda **kw: torch.from_numpy(audio_latent.copy())
        R.decode_audio_from_file = lambda p, d: R.Audio(waveform=torch.zeros(1, 2, 16), sampling_rate=16000)
    sync = torch.cuda.synchronize
    torch.cuda.synchronize = lambda *a, **k: None
    try:
        pipe(
            video_path=path,
            prompt=PROMPT,
            start_time=span[0],
            end_time=span[1],
            seed=42,
            num_inference_steps=STEPS,
            video_guider_params=MultiModalGuiderParams(**GUIDERS["video"]),
            audio_guider_params=MultiModalGuiderParams(**GUIDERS["audio"]),
            distilled=distilled,
            tiling_config=TilingConfig.default(),
            **regenerate,
        )
    finally:
        torch.cuda.synchronize = sync
        for n, v in saved.items():
            setattr(R, n, v)
    assert not queue, queue
    return got


def _masks() -> dict[str, np.ndarray]:
    import torch
    from ltx_core.tools import AudioLatentTools, VideoLatentTools
    from ltx_core.types import AudioLatentShape, VideoLatentShape
    from ltx_pipelines.retake import TemporalRegionMask
    from ltx_pipelines.utils.types import PipelineComponents

    comp = PipelineComponents(dtype=torch.float32, device=torch.device("cpu"))
    out = {}
    for name, f, h, w, fps, t in MASK_SHAPES:
        vt = VideoLatentTools(comp.video_patchifier, VideoLatentShape(1, 128, f, h, w), fps)
        at = AudioLatentTools(comp.audio_patchifier, AudioLatentShape(1, 8, t, 16))
        for i, (s, e) in enumerate(MASK_SPANS):
            for kind, tools in (("video", vt), ("audio", at)):
                state = tools.create_initial_state(torch.device("cpu"), torch.float32)
                state = TemporalRegionMask(start_time=s, end_time=e, fps=fps).apply_to(state, tools)
                out[f"masks.{name}.{i}.{kind}"] = state.denoise_mask[..., 0].numpy().copy()
    return out


def run(variant: str, model_dir: Path) -> dict[str, np.ndarray]:
    model_dir = Path(model_dir)
    pipe = _pipeline(model_dir)
    out = _masks()
    lat_f, lat_h, lat_w = (FRAMES - 1) // 8 + 1, HEIGHT // 32, WIDTH // 32
    audio_t = round(FRAMES / FPS * 25)
    rng = np.random.RandomState(SOURCE_SEED)
    src_v = rng.standard_normal((1, 128, lat_f, lat_h, lat_w)).astype(np.float32)
    src_a = rng.standard_normal((1, 8, audio_t, 16)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "source.mp4")
        make_av_file(path, FRAMES, HEIGHT, WIDTH, FPS, AUDIO_SECONDS)
        out["file.mp4"] = np.frombuffer(Path(path).read_bytes(), np.uint8).copy()
        cases = {
            "file": (FILE_SPAN, False, None),
            "run": (RUN_SPAN, False, (FPS, FRAMES, WIDTH, HEIGHT, src_v, src_a)),
            "distilled": (RUN_SPAN, True, (FPS, FRAMES, WIDTH, HEIGHT, src_v, src_a)),
        }
        n_ext = FRAMES + EXTEND_FRAMES
        ext_v = np.concatenate([src_v, np.zeros((1, 128, EXTEND_FRAMES // 8, lat_h, lat_w), np.float32)], 2)
        ext_t = round(n_ext / FPS * 25)
        ext_a = np.concatenate([src_a, np.zeros((1, 8, ext_t - audio_t, 16), np.float32)], 2)
        cases["extend"] = ((FRAMES / FPS, n_ext / FPS), False, (FPS, n_ext, WIDTH, HEIGHT, ext_v, ext_a))
        for i, (case, (span, distilled, source)) in enumerate(cases.items()):
            noise = _Noise(NOISE_SEED + 1 + i)
            got = _call(pipe, path, span, noise, distilled, source)
            for k, v in got.items():
                out[f"{case}.{k}"] = v
            for stream, a in noise.arrays.items():
                out[f"{case}.noise.{stream}"] = a
        run_source = cases["run"][2]
        for case, flag in (("keep_audio", "regenerate_audio"), ("keep_video", "regenerate_video")):
            noise = _Noise(NOISE_SEED + 2)  # the run case's (its index 1 above): the same draws
            got = _call(pipe, path, RUN_SPAN, noise, False, run_source, **{flag: False})
            for stream, a in noise.arrays.items():
                assert np.array_equal(a, out[f"run.noise.{stream}"]), stream
            for k in ("video_mask", "audio_mask", "sigmas", "video_latent", "audio_latent"):
                out[f"{case}.{k}"] = got[k]
    out["run.source_video"], out["run.source_audio"] = src_v, src_a
    return out
