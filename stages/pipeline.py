"""The pipeline in one place: user options -> the graph of stage nodes (keys known before anything runs)."""

from __future__ import annotations

import dataclasses
import math

from cache.store import Store
from stages import (
    budget,
    condition,
    decode,
    decode_audio,
    denoise,
    encode,
    encode_audio,
    encode_video,
    mux,
    options,
    refine,
    retake,
    upsample,
    vocode,
)
from stages.framework import Node
from stages.models import TINY_LORAS, ModelFiles, enhancer_root, resolve_model
from stages.options import (  # noqa: F401  (PIPELINES, TINY_DEFAULTS, Options re-exported)
    DEV_PIPELINES,
    PIPELINES,
    TINY_DEFAULTS,
    Options,
    audio_duration,
    reference_scale,
    resolve,
)

A2V_ENHANCE_SEED = 42


def _first(*values):
    return next((v for v in values if v is not None), None)


def _guiders(o: Options, files: ModelFiles) -> tuple[dict, dict]:
    from ltx import constants as C

    p = C.LTX_2_3_HQ_PARAMS if o.pipeline == "hq" else C.params_for_version(files.version)
    video, audio = p.video_guider, p.audio_guider
    if files.tiny_variant is not None:  # the tiny transformer has 2 blocks: perturb its last one
        video, audio = (
            dataclasses.replace(g, stg_blocks=(1,)) if g.stg_blocks else g for g in (video, audio)
        )
    if o.pipeline == "a2v":  # the reference's A2V guides the video only: MultiModalGuiderParams() for audio
        audio = C.NO_GUIDANCE
    given = {  # GuiderParams field -> (video's option value, audio's); --stg-scale sets both first
        "cfg_scale": (o.cfg_scale, o.audio_cfg_scale),
        "stg_scale": (_first(o.video_stg_scale, o.stg_scale), _first(o.audio_stg_scale, o.stg_scale)),
        "stg_blocks": (o.video_stg_blocks, o.audio_stg_blocks),
        "rescale_scale": (o.video_rescale_scale, o.audio_rescale_scale),
        "modality_scale": (o.a2v_guidance_scale, o.v2a_guidance_scale),
        "skip_step": (o.video_skip_step, o.audio_skip_step),
    }
    video = dataclasses.replace(video, **{k: v for k, (v, _) in given.items() if v is not None})
    if o.pipeline != "a2v":  # (options.py refuses a2v's audio guidance options; --stg-scale is the video's)
        audio = dataclasses.replace(audio, **{k: a for k, (_, a) in given.items() if a is not None})
    as_dict = lambda g: {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(g).items()}  # noqa: E731
    return as_dict(video), as_dict(audio)


def audio_node(nodes: dict[str, Node]) -> Node:
    """The node whose artifact holds the run's waveform: the vocoder's, or (a2v) the input audio as read."""
    return nodes["vocode"] if "vocode" in nodes else nodes["encode_audio"]


def _model_files(o: Options, store: Store) -> tuple[Options, ModelFiles]:
    """The model's files for `o` (its pipeline's checkpoint, the split components, the enhancer) and `o`
    resolved against them: every default filled in and every check passed (nothing written yet)."""
    files = resolve_model(
        o.model,
        store,
        pipeline=options.default_pipeline(o),
        checkpoint=o.checkpoint_path,
        upsampler=o.spatial_upsampler_path,
        gemma=o.gemma_root,
        split=o.split_paths(),
    )
    if o.prompt_enhancer_gemma_root is not None:
        files.enhancer = enhancer_root(o.prompt_enhancer_gemma_root)
    return resolve(o, files), files


def build(
    o: Options, store: Store, preflight: bool = True, force: bool = False
) -> tuple[dict[str, Node], Options, ModelFiles]:
    """The named nodes of the pipeline for options `o`, in order. preflight: refuse (LtxError) when a stage
    still to run is estimated not to fit in --memory-budget or this machine's memory (budget.preflight;
    `force` runs anyway); it also decides whether the transformer's blocks stream."""
    from ltx.diffusion import schedulers

    if o.source is not None:
        return _build_retake(o, store, preflight, force)
    o, files = _model_files(o, store)
    from ltx import constants as C

    # each stage is keyed by the files it reads: one checkpoint's digest, or a split model's component files
    ckpt = files.externals("video_vae")  # the video VAE encoder (conditioning, the upsampler's statistics)
    dit = files.externals("transformer")  # differs from the checkpoint only for a quantized conversion
    text = {**files.externals("text"), "gemma": files.gemma_digest}
    audio_ext = files.externals("audio_vae")
    duration, duration_ext = None, {}
    if o.auto_duration is not None:  # the encode stage predicts the frame count from the prompt
        duration_ext = files.externals("duration_head")
        duration = (*o.auto_duration, float(o.frame_rate))
    two_stage = o.two_stage
    # stage 1 at 1/scale of the output: half for the x2 upsampler, 2/3 for x1.5 (options.py checked the grid)
    h1, w1 = (
        budget.stage1_size(o.height, o.width, files.upsampler_scale) if two_stage else (o.height, o.width)
    )

    def lora_file(path: str) -> str:
        return str(files.tiny_lora(path)) if path in TINY_LORAS else path

    def lora_digest(path: str) -> str:
        return files.lora_digest(path) if path in TINY_LORAS else store.digest(path)

    user_loras = tuple((lora_file(p), float(s)) for p, s in o.loras)
    lora_ext = {f"lora{i}": lora_digest(p) for i, (p, _) in enumerate(o.loras)}
    rt = {"files": files, "loras": user_loras, "stream": False}  # "stream": set by the pre-flight below
    frames = tuple((int(f), float(s)) for _, f, s in o.images)
    images_ext = {f"image{i}": store.digest(p) for i, (p, _, _) in enumerate(o.images)}
    nodes: dict[str, Node] = {}
    # 1. text: the prompt (and the negative prompt when guidance needs it) -> contexts
    # the reference seeds enhancement with the generation seed in the TI2Vid pipelines; its A2V pipeline
    # leaves encode_prompts' default seed, 42
    enhance = (A2V_ENHANCE_SEED if o.pipeline == "a2v" else o.seed) if o.enhance_prompt else None
    enhancer = {"enhancer": files.enhancer_digest} if enhance is not None and files.enhancer else {}
    nodes["encode"] = Node(
        encode.STAGE,
        encode.Params(o.prompt.strip(), enhance, duration),
        externals={**text, **duration_ext, **enhancer},
        runtime=files,
    )
    if o.pipeline in DEV_PIPELINES:
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
    # 2b. ic-lora: each reference video -> latents at the stage-1 size / the IC-LoRA's downscale factor
    reference, refs = None, {}  # refs: denoise's input name -> the encode_video node
    if o.video_conditioning:
        scale = reference_scale(o, files)
        for i, (path, _) in enumerate(o.video_conditioning):
            label, name = (
                ("encode_video", "reference") if i == 0 else (f"encode_video_{i + 1}", f"reference{i + 1}")
            )
            nodes[label] = refs[name] = Node(
                encode_video.STAGE,
                encode_video.Params(h1 // scale, w1 // scale, 0, o.num_frames),
                externals={**ckpt, "video": store.digest(path)},
                runtime={"files": files, "path": path},
            )
        mask = o.conditioning_attention_mask
        reference = {"strengths": [float(s) for _, s in o.video_conditioning], "downscale": scale}
        reference |= {"mask": mask is not None, "attention": float(mask[1]) if mask else 1.0}
    # 2c. a2v: the audio file -> audio latents cut to the video's length (frozen below) + the waveform read
    if o.pipeline == "a2v":
        from ltx.constants import audio_latent_frames

        nodes["encode_audio"] = Node(
            encode_audio.STAGE,
            encode_audio.Params(
                float(o.audio_start_time),
                float(audio_duration(o)),
                audio_latent_frames(o.num_frames, o.frame_rate),
            ),
            externals={**audio_ext, "audio": store.digest(o.audio_path)},
            runtime={"files": files, "path": o.audio_path},
        )
    # 3. stage 1: noise -> video and audio latents (guided for the dev pipelines; hq: res_2s over the
    # scheduler shifted for the stage's own token count, the distilled LoRA at its stage-1 strength;
    # LTX-2.5's distilled stage 1: Euler ancestral)
    sampler, shift_steps = ("res2s" if o.pipeline == "hq" else "euler"), None
    if o.pipeline not in DEV_PIPELINES:
        sigmas, vg, ag = schedulers.distilled_sigmas(1), None, None
        if o.pipeline == "distilled" and C.uses_ancestral_stage1(files.version):
            sampler = "euler_ancestral"
    elif o.pipeline == "hq" and o.num_frames is None:  # the token count follows the predicted frame count
        (vg, ag), sigmas, shift_steps = _guiders(o, files), (), o.steps
    elif o.pipeline == "hq":
        from ltx.constants import video_latent_shape

        tokens = math.prod(video_latent_shape(o.num_frames, h1, w1))
        (vg, ag), sigmas = _guiders(o, files), schedulers.ltx2_sigmas(o.steps, tokens=tokens)
    else:
        (vg, ag), sigmas = _guiders(o, files), schedulers.ltx2_sigmas(o.steps)
    inputs = {"context": nodes["encode"]}
    if "encode_negative" in nodes:
        inputs["negative"] = nodes["encode_negative"]
    if o.images:
        inputs["images"] = nodes["condition"]
    if "encode_audio" in nodes:
        inputs["audio"] = nodes["encode_audio"]
    named1 = list(o.loras)
    if o.pipeline == "hq":
        named1.append((o.distilled_lora[0], o.distilled_lora_strength_stage_1))
        user_loras = tuple((lora_file(p), float(s)) for p, s in named1)
        lora_ext = {f"lora{i}": lora_digest(p) for i, (p, _) in enumerate(named1)}
        rt["loras"] = user_loras
    ext1 = {**dit, **lora_ext}
    if reference is not None:
        inputs |= refs
        rt["mask"] = o.conditioning_attention_mask[0] if reference["mask"] else None
        if reference["mask"]:
            ext1["attention_mask"] = store.digest(o.conditioning_attention_mask[0])
    keyframes = o.pipeline == "keyframes"  # every image as appended keyframe tokens, frame 0 too
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
            keyframes,
            reference,
            sampler,
            shift_steps,
        ),
        inputs,
        ext1,
        rt,
    )
    final = nodes["denoise"]
    if two_stage and not o.skip_stage_2:
        # 4. latent upsampler (x2, or x1.5)
        nodes["upsample"] = Node(
            upsample.STAGE,
            upsample.Params(),
            {"latents": final},
            {**ckpt, "upsampler": files.upsampler_digest},
            files,
        )
        # 5. stage 2: refine at full resolution (distilled sigmas; the distilled LoRA for dev-two-stage,
        # keyframes, a2v, hq at its stage-2 strength; ic-lora's stage 2 runs the plain distilled model, as the
        # reference)
        named2 = [] if o.pipeline == "ic-lora" else list(o.loras)
        named2 += [o.distilled_lora] if o.distilled_lora else []
        if o.pipeline == "hq":
            named2[-1] = (o.distilled_lora[0], o.distilled_lora_strength_stage_2)
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
        if "encode_audio" in nodes:
            inputs2["audio"] = nodes["encode_audio"]
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
                keyframes,
                "res2s" if o.pipeline == "hq" else "euler",  # stage 2: Euler but for hq
            ),
            inputs2,
            ext2,
            {"files": files, "loras": loras2, "stream": False},
        )
        final = nodes["refine"]
    # LTX-2.5's dev-two-stage and hq decode the stage-1 audio, as 1.2.0 (stage 2 refines the video)
    sound = (
        nodes["denoise"] if "refine" in nodes and C.decodes_stage1_audio(files.version, o.pipeline) else None
    )
    _outputs(o, files, nodes, final, audio_ext, sound)
    if preflight:
        pending = {label for label, n in nodes.items() if force or not store.exists(n.key)}
        if budget.preflight(files, o, pending, force):
            for n in nodes.values():
                if isinstance(n.runtime, dict) and "stream" in n.runtime:
                    n.runtime["stream"] = True
    return nodes, o, files


def _outputs(
    o: Options,
    files: ModelFiles,
    nodes: dict[str, Node],
    final: Node,
    audio_ext: dict,
    sound: Node | None = None,
) -> None:
    """6. decode: video latents -> frames (tiled), audio latents (`sound`'s, default `final`'s) -> mel ->
    waveform (a2v: the input audio); 7. mux: H.264 + AAC (video only with --no-audio). Added to `nodes`."""
    if o.decoder == "conv":
        conv = files.decoder_file("conv")
        dec_ext = (
            {"checkpoint": files.checkpoint_digest}
            if conv == files.checkpoint
            else {"conv_vae": files.decoder_digest("conv")}
        )
    else:
        dec_ext = {"diffusion_vae": files.decoder_digest("diffusion")}
    dec_params = decode.Params(o.tiling, o.seed, o.decoder)
    nodes["decode"] = Node(decode.STAGE, dec_params, {"latents": final}, dec_ext, files)
    if o.pipeline != "a2v":  # a2v muxes the input audio as read
        nodes["decode_audio"] = Node(
            decode_audio.STAGE, decode_audio.Params(), {"latents": sound or final}, audio_ext, files
        )
        nodes["vocode"] = Node(
            vocode.STAGE, vocode.Params(), {"mel": nodes["decode_audio"]}, audio_ext, files
        )
    sound = audio_node(nodes)
    streams = {"video": nodes["decode"]} if o.no_audio else {"video": nodes["decode"], "audio": sound}
    nodes["mux"] = Node(mux.STAGE, mux.Params(float(o.frame_rate)), streams)


def _build_retake(
    o: Options, store: Store, preflight: bool, force: bool
) -> tuple[dict[str, Node], Options, ModelFiles]:
    """ltx retake / extend (options.source set): the source's latents (a run's, or a video file's through
    encode_video and encode_audio) -> one retake stage at the source's size -> decode, audio, mux."""
    from ltx.diffusion import schedulers

    src = options.source(o, store)  # checked before anything is written
    start, end, frames = options.span(o, src)
    regen_video, regen_audio = options.regenerated(o, src)
    o = dataclasses.replace(
        o, height=src.height, width=src.width, num_frames=frames, frame_rate=src.frame_rate
    )
    o, files = _model_files(o, store)
    ckpt = files.externals("video_vae")  # as in build: each stage keyed by the component files it reads
    text = {**files.externals("text"), "gemma": files.gemma_digest}
    audio_ext = files.externals("audio_vae")
    tiny_lora = lambda p: p in TINY_LORAS  # noqa: E731
    user_loras = tuple((str(files.tiny_lora(p)) if tiny_lora(p) else p, float(s)) for p, s in o.loras)
    externals = files.externals("transformer")
    externals |= {
        f"lora{i}": files.lora_digest(p) if tiny_lora(p) else store.digest(p)
        for i, (p, _) in enumerate(o.loras)
    }
    nodes: dict[str, Node] = {}
    # 1. text: the prompt of the regenerated span (and the negative prompt, "" by default, for dev)
    enhance = o.seed if o.enhance_prompt else None
    enhancer = {"enhancer": files.enhancer_digest} if enhance is not None and files.enhancer else {}
    nodes["encode"] = Node(
        encode.STAGE, encode.Params(o.prompt.strip(), enhance), externals={**text, **enhancer}, runtime=files
    )
    inputs: dict = {"context": nodes["encode"]}
    if o.pipeline == "dev":
        nodes["encode_negative"] = Node(
            encode.STAGE, encode.Params(o.negative_prompt.strip()), externals=text, runtime=files
        )
        inputs["negative"] = nodes["encode_negative"]
    # 2. the source: a run's final latents as they are, or a video file's frames and audio track encoded
    if src.kind == "latents":
        inputs["video"] = inputs["audio"] = src.ref
        if o.source_audio is not None:  # the audio the run decoded (LTX-2.5's dev-two-stage, hq: stage 1's)
            options.source_audio(o, store)
            inputs["audio"] = o.source_audio
    else:
        file_ext = {**ckpt, "video": store.digest(src.ref)}
        nodes["encode_video"] = Node(
            encode_video.STAGE,
            encode_video.Params(src.height, src.width, 0, src.num_frames),
            externals=file_ext,
            runtime={"files": files, "path": src.ref},
        )
        inputs["video"] = nodes["encode_video"]
        if src.has_audio:
            nodes["encode_audio"] = Node(
                encode_audio.STAGE,
                encode_audio.Params(),  # the whole track; the retake stage cuts or pads it
                externals={**audio_ext, "audio": file_ext["video"]},
                runtime={"files": files, "path": src.ref},
            )
            inputs["audio"] = nodes["encode_audio"]
    # 3. the span regenerated (guided, LTX-2 scheduler; distilled: its 8 sigmas), the rest kept
    if o.pipeline == "distilled":
        sigmas, vg, ag = schedulers.distilled_sigmas(1), None, None
    else:
        (vg, ag), sigmas = _guiders(o, files), schedulers.ltx2_sigmas(o.steps)
    rt = {"files": files, "loras": user_loras, "stream": False}
    nodes["retake"] = Node(
        retake.STAGE,
        retake.Params(
            start,
            end,
            frames,
            float(o.frame_rate),
            o.seed,
            tuple(sigmas),
            vg,
            ag,
            tuple(s for _, s in user_loras),
            regen_video,
            regen_audio,
        ),  # fmt: skip
        inputs,
        externals,
        rt,
    )
    _outputs(o, files, nodes, nodes["retake"], audio_ext)  # 4. decode and mux, as for a generated run
    if preflight:  # the retake stage is estimated as the one-stage denoise it runs
        pending = {label for label, n in nodes.items() if force or not store.exists(n.key)}
        pending |= {"denoise"} if "retake" in pending else set()
        if budget.preflight(files, o, pending, force):
            rt["stream"] = True
    return nodes, o, files
