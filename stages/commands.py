"""The pipeline commands: `ltx generate`, one command per stage, and `ltx status`.

Every pipeline command takes the same options and builds the same graph (stages/pipeline.py), so
a stage run alone produces exactly the key and bits it has inside `generate`. A run name remembers
the options: `ltx decode RUN --tiling aggressive` reuses everything else from RUN.
"""

import dataclasses
import inspect
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stages import progress, validate
from stages.framework import LtxError, Node, ensure
from stages.session import State, echo

if TYPE_CHECKING:
    from cache.store import Artifact

STEP_COMMANDS = {
    "encode": ("encode", "Encode the prompt (and negative prompt) into text contexts."),
    "encode-audio": (
        "encode_audio",
        "Encode --audio-path into audio latents (a2v): decode, resample, log-mel, audio VAE encoder.",
    ),
    "condition": ("condition", "Encode the --image files into conditioning latents."),
    "encode-video": (
        "encode_video",
        "Encode a video file into latents (the --video-conditioning reference of --pipeline ic-lora).",
    ),
    "denoise": (
        "denoise",
        "Stage 1: denoise video and audio latents (half resolution for two-stage pipelines).",
    ),
    "upsample": ("upsample", "Upsample stage-1 video latents (x2, or x1.5) with the latent upsampler."),
    "refine": ("refine", "Stage 2: refine the upsampled latents at full resolution."),
    "decode": ("decode", "Decode video latents to frames (tiled: --tiling)."),
    "decode-audio": ("decode_audio", "Decode audio latents to a mel spectrogram."),
    "vocode": ("vocode", "Turn the mel spectrogram into a waveform."),
    "mux": ("mux", "Mux frames and waveform into an .mp4 (H.264 + AAC) at --output-path."),
}


def _split_multi(argv: list[str]) -> list[str]:
    """`--image PATH FRAME STRENGTH` and `--lora PATH [STRENGTH]` take several values (as in the
    reference CLI); Typer options take one, so join them as PATH::FRAME::STRENGTH."""
    out, i = [], 0
    arity = {"--image": (3, 3), "--lora": (1, 2), "--distilled-lora": (1, 2), "--auto-duration": (2, 2)}
    arity |= {"--video-conditioning": (2, 2), "--conditioning-attention-mask": (2, 2)}  # PATH STRENGTH
    arity |= {f"--{m}-stg-blocks": (0, 1 << 10) for m in ("video", "audio")}  # BLOCK ..., as the reference
    while i < len(argv):
        a = argv[i]
        if a in arity:
            lo, hi = arity[a]
            vals = [argv[i + 1]] if i + 1 < len(argv) and (lo or not argv[i + 1].startswith("--")) else []
            j = i + 2
            while len(vals) < hi and j < len(argv) and not argv[j].startswith("--"):
                vals.append(argv[j])
                j += 1
            if len(vals) < lo or (a == "--image" and len(vals) != 3):
                want = {"--image": "PATH FRAME STRENGTH", "--auto-duration": "MIN_SECONDS MAX_SECONDS"}.get(
                    a, "PATH STRENGTH" if lo == 2 else "PATH [STRENGTH]"
                )
                raise LtxError(f"{a} needs {want}")
            out += [a, "::".join(vals) or "none"]
            i = j
        else:
            out.append(a)
            i += 1
    return out


def _num(kind: type, value: str, what: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise LtxError(f"{what} {value!r} is not a valid {kind.__name__}") from None


def _images(values: list[str] | None) -> list[tuple[str, int, float]]:
    out = []
    for v in values or []:
        path, frame, strength = v.split("::")
        out.append((path, _num(int, frame, "--image frame"), _num(float, strength, "--image strength")))
    return out


def _blocks(value: str | None, name: str) -> tuple[int, ...] | None:
    """`--video-stg-blocks 28 29` (joined as 28::29), `none` for no block; None if not given."""
    if value is None:
        return None
    option = "--" + name.replace("_", "-")
    parts = [v for v in value.replace(",", "::").split("::") if v and v != "none"]
    return tuple(_num(int, v, option) for v in parts)


def _loras(values: list[str] | None) -> list[tuple[str, float]]:
    out = []
    for v in values or []:
        path, _, strength = v.partition("::")
        out.append((path, _num(float, strength, "--lora strength") if strength else 1.0))
    return out


def _path_strength(value: str | None, option: str) -> tuple[str, float] | None:
    if value is None:
        return None
    path, _, strength = value.partition("::")
    return path, _num(float, strength, f"{option} strength")


def _run_name(run: str | None, output_path: Path | None) -> str:
    from cache.store import check_run_name

    if run:
        return check_run_name(run)
    if output_path is not None:
        return check_run_name(re.sub(r"[^A-Za-z0-9._-]", "_", output_path.stem).lstrip("._-") or "latest")
    return "latest"


def _record(store, name: str, nodes: dict[str, Node], options, output_path: Path | None) -> None:
    stages = {}
    for label, node in nodes.items():
        stages[label] = node.key
    recipes = {
        label: {
            "version": n.stage.version,
            "params": dataclasses.asdict(n.params),
            "inputs": n.input_keys,
            "externals": n.externals,
        }
        for label, n in nodes.items()
    }
    opts = dataclasses.asdict(options)
    prior = store.load_run(name) or {}
    store.save_run(
        name,
        {
            "options": opts,
            "stages": stages,
            "recipes": recipes,
            "output_path": str(output_path) if output_path else prior.get("output_path"),
        },
    )


def _options_from(raw: dict[str, Any], stored: dict[str, Any]):
    """The Options a command's raw CLI values ask for, over a run's stored options. A flag left off
    (False) means "as the run had it", like any option not given."""
    from stages.options import Options

    fields = {f.name for f in dataclasses.fields(Options)}
    given = {k: (v or None) if isinstance(v, bool) else v for k, v in raw.items() if k in fields}
    given["images"] = _images(raw.get("image"))
    given["loras"] = _loras(raw.get("lora"))
    given["distilled_lora"] = _loras([raw["distilled_lora"]])[0] if raw.get("distilled_lora") else None
    given["video_conditioning"] = [
        _path_strength(v, "--video-conditioning") for v in raw.get("video_conditioning") or []
    ]
    mask = raw.get("conditioning_attention_mask")
    given["conditioning_attention_mask"] = _path_strength(mask, "--conditioning-attention-mask")
    for name in ("video_stg_blocks", "audio_stg_blocks"):
        given[name] = _blocks(raw.get(name), name)
    if raw.get("auto_duration"):
        lo, hi = raw["auto_duration"].split("::")
        given["auto_duration"] = (
            _num(float, lo, "--auto-duration MIN"),
            _num(float, hi, "--auto-duration MAX"),
        )
    return Options(**given).merged(stored)


def _plan(
    run: str | None,
    output_path: Path | None,
    output_audio: Path | None = None,
    force: bool = False,
    need: str | None = None,
    **raw: Any,
):
    from stages import pipeline

    store = State.store()
    name = _run_name(run, output_path)
    stored = (store.load_run(name) or {}).get("options", {}) if run else {}
    opts = _options_from(raw, stored)
    validate.outputs(output_path, output_audio, bool(opts.no_audio))
    from ltx import settings

    settings.check()  # a bad LTX_DTYPE / LTX_CPU_GEMM fails here, before any stage runs
    nodes, resolved, files = pipeline.build(opts, store, force=force)
    if need is not None and need not in nodes:  # a step the pipeline has not: say so before writing anything
        raise LtxError(
            f"stage {need!r} is not part of --pipeline {resolved.pipeline}"
            + (" without --image" if need.startswith("condition") else "")
            + (" (it encodes the --video-conditioning of ic-lora)" if need == "encode_video" else "")
        )
    if files.tiny_variant is None:  # which files of the model folder or repo this run uses
        echo(files.choice(resolved.distilled_lora[0] if resolved.distilled_lora else None))
    _scratch_in_cache(store)
    if State.verbose:
        from ltx import ops

        echo("backend: " + ", ".join(f"{k} {v}" for k, v in ops.describe().items()))
    return store, name, nodes, resolved, files


def _scratch_in_cache(store) -> None:
    """Our temporary files (and ffmpeg's outputs in them) go under the cache directory, so that a run
    writes nothing outside it but the requested outputs. (MLX keeps its compiled CPU kernels in the
    system temp directory; it is left there so that every cache directory shares them.)"""
    import tempfile

    store.ensure_writable()
    scratch = store.local / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    tempfile.tempdir = str(scratch)


def _write_outputs(store, nodes: dict[str, Node], output_path: Path, output_audio: Path | None) -> None:
    """The requested files: the container follows the extension (mux.VIDEO_CONTAINERS with the cached
    H.264 + AAC streams, mux.AUDIO_CONTAINERS for the audio alone)."""
    from stages import mux
    from stages.pipeline import audio_node

    if output_path.suffix.lower() in mux.AUDIO_CONTAINERS:
        voc = ensure(store, audio_node(nodes), echo=echo)
        mux.write_audio_atomic(output_path, voc["waveform"], int(voc["sample_rate"]))
    else:
        art = ensure(store, nodes["mux"], echo=echo)
        mux.write_output(mux.remux(art["mp4"].tobytes(), output_path.suffix.lower()), output_path)
    if output_audio is not None:
        voc = ensure(store, audio_node(nodes), echo=echo)
        mux.write_audio_atomic(output_audio, voc["waveform"], int(voc["sample_rate"]))


# ---- the shared option set ------------------------------------------------------------------------
def _options(
    run: Annotated[
        str | None, typer.Argument(help="Run name: reuses that run's options; results are recorded under it.")
    ] = None,
    prompt: Annotated[
        str | None, typer.Option("--prompt", "-p", help="What the video shows and sounds like.")
    ] = None,
    negative_prompt: Annotated[
        str | None, typer.Option(help="What to avoid (dev pipelines; default: the reference's).")
    ] = None,
    height: Annotated[
        int | None, typer.Option(help="Output height in pixels (divisible by 64 two-stage, 32 one-stage).")
    ] = None,
    width: Annotated[int | None, typer.Option(help="Output width in pixels.")] = None,
    num_frames: Annotated[
        int | None,
        typer.Option(
            help="Frames, 1 + 8k (default 121; 25 for the tiny models; LTX-2.5: predicted from the prompt)."
        ),
    ] = None,
    auto_duration: Annotated[
        str | None,
        typer.Option(
            "--auto-duration",
            help="MIN MAX: seconds the duration predicted from the prompt is clamped to (LTX-2.5; default 1 20).",
        ),
    ] = None,
    frame_rate: Annotated[float | None, typer.Option(help="Frames per second (default 24).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default 10).")] = None,
    steps: Annotated[
        int | None,
        typer.Option(
            "--num-inference-steps",
            "--steps",
            help="Denoising steps (dev pipelines; default 40, 30 for LTX-2.3).",
        ),
    ] = None,
    cfg_scale: Annotated[
        float | None,
        typer.Option(
            "--video-cfg-guidance-scale",
            "--cfg-scale",
            help="Video classifier-free guidance scale (dev pipelines).",
        ),
    ] = None,
    audio_cfg_scale: Annotated[
        float | None,
        typer.Option(
            "--audio-cfg-guidance-scale", "--audio-cfg-scale", help="Audio classifier-free guidance scale."
        ),
    ] = None,
    stg_scale: Annotated[
        float | None, typer.Option("--stg-scale", help="Spatio-temporal guidance scale of both modalities.")
    ] = None,
    video_stg_scale: Annotated[
        float | None, typer.Option("--video-stg-guidance-scale", help="Video spatio-temporal guidance scale.")
    ] = None,
    audio_stg_scale: Annotated[
        float | None, typer.Option("--audio-stg-guidance-scale", help="Audio spatio-temporal guidance scale.")
    ] = None,
    video_stg_blocks: Annotated[
        str | None,
        typer.Option(
            "--video-stg-blocks",
            help="BLOCK ...: the transformer blocks video STG perturbs (none: no block).",
        ),
    ] = None,
    audio_stg_blocks: Annotated[
        str | None,
        typer.Option("--audio-stg-blocks", help="BLOCK ...: the transformer blocks audio STG perturbs."),
    ] = None,
    video_rescale_scale: Annotated[
        float | None, typer.Option("--video-rescale-scale", help="Video guidance rescale (0 = off).")
    ] = None,
    audio_rescale_scale: Annotated[
        float | None, typer.Option("--audio-rescale-scale", help="Audio guidance rescale (0 = off).")
    ] = None,
    a2v_guidance_scale: Annotated[
        float | None,
        typer.Option("--a2v-guidance-scale", help="Audio-to-video modality guidance (1.0 = no effect)."),
    ] = None,
    v2a_guidance_scale: Annotated[
        float | None,
        typer.Option("--v2a-guidance-scale", help="Video-to-audio modality guidance (1.0 = no effect)."),
    ] = None,
    video_skip_step: Annotated[
        int | None,
        typer.Option("--video-skip-step", help="Skip video guidance on all but every N+1-th step."),
    ] = None,
    audio_skip_step: Annotated[
        int | None,
        typer.Option("--audio-skip-step", help="Skip audio guidance on all but every N+1-th step."),
    ] = None,
    image: Annotated[
        list[str] | None,
        typer.Option("--image", help="PATH FRAME STRENGTH: condition on an image (repeatable)."),
    ] = None,
    lora: Annotated[
        list[str] | None,
        typer.Option("--lora", help="PATH [STRENGTH]: apply a LoRA (ComfyUI keys; repeatable)."),
    ] = None,
    distilled_lora: Annotated[
        str | None, typer.Option(help="PATH [STRENGTH]: the distilled LoRA for dev-two-stage, hq, a2v.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            envvar="LTX_MODEL",
            help="'tiny' (random weights), 'tiny-2.3', 'tiny-2.5', a model directory, or a Hugging Face repo id "
            "in the local cache (Lightricks/LTX-2); `ltx models` lists what is found.",
        ),
    ] = None,
    checkpoint_path: Annotated[
        str | None, typer.Option(help="The checkpoint file (default: chosen from --model by --pipeline).")
    ] = None,
    spatial_upsampler_path: Annotated[
        str | None,
        typer.Option(
            help="The spatial upsampler file, x2 or x1.5: stage 1 runs at 1/2 or 2/3 of the size (default: the "
            "x2 in --model; the tiny models: tiny:x2 or tiny:x1.5)."
        ),
    ] = None,
    gemma_root: Annotated[
        str | None,
        typer.Option(
            help="Gemma-3 directory or Hugging Face repo id (default: the one in --model, else "
            "google/gemma-3-12b-it-qat-q4_0-unquantized from the Hugging Face cache)."
        ),
    ] = None,
    prompt_enhancer_gemma_root: Annotated[
        str | None,
        typer.Option(
            help="Gemma-3 instruct directory or Hugging Face repo id that --enhance-prompt runs on (needed "
            "with LTX-2.5, whose Gemma 4 encoder cannot generate; default: the encoding Gemma)."
        ),
    ] = None,
    transformer_path: Annotated[
        str | None, typer.Option(help="Split checkpoint: the transformer file (LTX-2.5 diffusion_models/).")
    ] = None,
    text_encoder_path: Annotated[
        str | None, typer.Option(help="Split checkpoint: the text encoder (the Gemma folder).")
    ] = None,
    video_vae_path: Annotated[
        str | None,
        typer.Option(help="Split checkpoint: the video VAE file (vae/; diffusion or conv decoder)."),
    ] = None,
    audio_vae_path: Annotated[
        str | None, typer.Option(help="Split checkpoint: the audio VAE + vocoder file (vae/).")
    ] = None,
    duration_head_path: Annotated[
        str | None, typer.Option(help="Split checkpoint: the duration head file (model_patches/).")
    ] = None,
    pipeline: Annotated[
        str | None,
        typer.Option(
            help="distilled (default), dev (one stage, guided), dev-two-stage, keyframes (--image tokens at "
            "any frame), ic-lora (--video-conditioning with an IC-LoRA), hq (res_2s sampler) or a2v (audio to "
            "video: --audio-path)."
        ),
    ] = None,
    audio_path: Annotated[
        str | None,
        typer.Option(help="a2v: the audio to make the video for (wav, flac, mp3, or a video's audio track)."),
    ] = None,
    audio_start_time: Annotated[
        float | None, typer.Option(help="a2v: seconds into --audio-path to start reading (default 0).")
    ] = None,
    audio_max_duration: Annotated[
        float | None,
        typer.Option(help="a2v: seconds of audio to read (default: the video's length, frames / fps)."),
    ] = None,
    distilled_lora_strength_stage_1: Annotated[
        float | None,
        typer.Option(
            "--distilled-lora-strength-stage-1",
            help="hq: the distilled LoRA's strength in stage 1 (default 0.25).",
        ),
    ] = None,
    distilled_lora_strength_stage_2: Annotated[
        float | None,
        typer.Option(
            "--distilled-lora-strength-stage-2",
            help="hq: the distilled LoRA's strength in stage 2 (default 0.5).",
        ),
    ] = None,
    video_conditioning: Annotated[
        list[str] | None,
        typer.Option(
            "--video-conditioning", help="REF.mp4 STRENGTH: the reference video of --pipeline ic-lora."
        ),
    ] = None,
    conditioning_attention_mask: Annotated[
        str | None,
        typer.Option(
            "--conditioning-attention-mask",
            help="MASK.mp4 STRENGTH: weigh the reference video's attention per region (ic-lora; grey levels "
            "in [0, 1] times STRENGTH).",
        ),
    ] = None,
    skip_stage_2: Annotated[
        bool,
        typer.Option("--skip-stage-2", help="ic-lora: no upsample and refine; the output is half size."),
    ] = False,
    tiling: Annotated[
        str | None,
        typer.Option(
            help="Video decode tiling: none, default, aggressive, conservative, or SPATIAL:OVERLAP,FRAMES:OVERLAP."
        ),
    ] = None,
    decoder: Annotated[
        str | None,
        typer.Option(
            help="Video decoder: conv or diffusion (the default of LTX-2.5 models; others have conv only)."
        ),
    ] = None,
    image_crf: Annotated[
        int | None,
        typer.Option(
            help="H.264 CRF of the conditioning-image round trip (0 = off; default 33, 18 from LTX-2.4)."
        ),
    ] = None,
    enhance_prompt: Annotated[
        bool, typer.Option("--enhance-prompt", help="Rewrite the prompt with Gemma first (seeded by --seed).")
    ] = False,
    memory_budget: Annotated[
        float | None,
        typer.Option(help="GB: stream transformer blocks from disk if needed to stay within it (same bits)."),
    ] = None,
    output_path: Annotated[
        Path | None, typer.Option(help="Where to write the .mp4 (or a .wav for audio only).")
    ] = None,
    output_audio: Annotated[
        Path | None, typer.Option("--output-audio", help="Also write the audio here (.wav or .flac).")
    ] = None,
    no_audio: Annotated[
        bool, typer.Option("--no-audio", help="Video only: no audio track (the audio is not decoded).")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Recompute even if cached, and run even when the memory pre-flight estimates it will not fit.",
        ),
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Progress and results as JSON lines on stdout (one event a line).")
    ] = False,
) -> None:
    pass


def _generate_only(
    no_preview: Annotated[
        bool, typer.Option("--no-preview", help="Do not write the contact sheet (out/x.mp4 -> out/x.png).")
    ] = False,
) -> None:
    pass


def _signature(*fns) -> inspect.Signature:
    """One signature with the parameters of `fns`, in order (the shared options plus a command's own)."""
    params = [p for fn in fns for p in inspect.signature(fn).parameters.values()]
    return inspect.Signature(params)


def _in_session(fn, extra=None):
    """`fn` run inside a progress session (a bar, plain lines or --json events); `extra` adds --json to
    a command whose signature lacks it."""

    def command(**kw: Any) -> Any:
        with progress.session(json=kw.pop("json_out", False)):
            return fn(**kw)

    command.__signature__ = _signature(fn, extra) if extra else inspect.signature(fn)
    command.__doc__, command.__name__ = fn.__doc__, fn.__name__
    return command


def _make_step(label: str, doc: str):
    def command(**kw: Any) -> None:
        from stages.models import TINY_NAMES

        output_path, output_audio, force = kw.pop("output_path"), kw.pop("output_audio"), kw.pop("force")
        if label in FROM_KEY and _is_key_ref(kw["run"]):
            return _step_from_key(label, kw, force)
        store, name, nodes, opts, files = _plan(kw.pop("run"), output_path, output_audio, force, label, **kw)
        _record(store, name, nodes, opts, output_path)
        if label == "mux":
            if output_path is None:
                raise LtxError("ltx mux needs --output-path FILE.mp4")
            _write_outputs(store, nodes, output_path, output_audio)
            progress.output({"mux": nodes["mux"].key}, name, [p for p in (output_path, output_audio) if p])
            return
        keys = {}  # printed one a line, the stage's own last; with --json one "output" event
        for more in [k for k in nodes if label == "encode_video" and k.startswith("encode_video_")]:
            node = nodes[more]
            keys[more] = (
                ensure_inputs_then_force(store, node) if force else ensure(store, node, echo=echo)
            ).key
        if force:
            art = ensure_inputs_then_force(store, nodes[label])
        else:
            art = ensure(store, nodes[label], echo=echo)
        if label == "encode" and "encode_negative" in nodes:
            keys["encode_negative"] = ensure(store, nodes["encode_negative"], echo=echo).key
        keys[label] = art.key
        progress.output(keys, name)
        if files.tiny_variant is not None and (opts.model or "tiny") in TINY_NAMES and label == "decode":
            echo(f"note: {__import__('ltx.weights.tiny', fromlist=['NOTICE']).NOTICE}")

    command.__signature__ = inspect.signature(_options)
    command.__doc__ = doc
    return command


# Steps that can start from an artifact given by key: (input name, stages whose output it accepts).
FROM_KEY = {
    "decode": ("latents", ("denoise", "upsample", "refine")),
    "decode_audio": ("latents", ("denoise", "refine")),
    "vocode": ("mel", ("decode_audio",)),
}


def _is_key_ref(ref: str | None) -> bool:
    """A key or key prefix that is not also a run name."""

    if not ref or not re.fullmatch(r"[0-9a-fA-F]{4,64}", ref):
        return False
    try:
        return State.store().load_run(ref) is None
    except Exception:  # noqa: BLE001
        return True


def _step_from_key(label: str, kw: dict[str, Any], force: bool) -> None:
    """`ltx decode 3f2a9c1e --tiling aggressive`: run one step on an artifact given by key or prefix."""
    from stages import decode, decode_audio, vocode
    from stages.models import SPLIT_OPTIONS, resolve_model

    store = State.store()
    key = store.resolve(kw["run"])
    name, accepted = FROM_KEY[label]
    manifest = store.manifest(key)
    if manifest.get("stage") not in accepted:
        raise LtxError(
            f"artifact {key[:8]} is a {manifest.get('stage')} artifact; ltx {label.replace('_', '-')} "
            f"takes one of: {', '.join(accepted)}"
        )
    files = resolve_model(
        kw["model"],
        store,
        pipeline=kw["pipeline"] or "distilled",
        checkpoint=kw["checkpoint_path"],
        upsampler=kw["spatial_upsampler_path"],
        gemma=kw["gemma_root"],
        split={o: kw[o[2:].replace("-", "_")] for o in SPLIT_OPTIONS},
    )
    made_with = manifest.get("externals", {}).get("checkpoint")
    if made_with and made_with not in (files.checkpoint_digest, files.transformer_digest):
        raise LtxError(
            f"artifact {key[:8]} was made with another model than --model {kw['model'] or 'tiny'}; "
            "pass the --model it was made with"
        )
    ckpt, audio_ext = files.externals("video_vae"), files.externals("audio_vae")
    if label == "decode":
        kind = kw["decoder"] or files.decoders[0]
        tiling = kw["tiling"] or "default"
        validate.decoder(kind, tiling, files)
        params = decode.Params(tiling, kw["seed"] if kw["seed"] is not None else 10, kind)
        ext = ckpt if kind == "conv" else {"diffusion_vae": files.decoder_digest("diffusion")}
        node = Node(decode.STAGE, params, {name: key}, ext, files)
    elif label == "decode_audio":
        node = Node(decode_audio.STAGE, decode_audio.Params(), {name: key}, audio_ext, files)
    else:
        node = Node(vocode.STAGE, vocode.Params(), {name: key}, audio_ext, files)
    _scratch_in_cache(store)
    progress.output({label: ensure(store, node, force=force, echo=echo).key})


def ensure_inputs_then_force(store, node: Node) -> "Artifact":
    """The node recomputed from its (cached or computed) inputs; the new artifact is not read back."""
    done: dict = {}  # inputs opened (and verified) once, then reused by the forced run
    for inp in node.inputs.values():
        if isinstance(inp, Node):
            ensure(store, inp, echo=echo, _done=done)
    return ensure(store, node, force=True, echo=echo, _done=done)


def generate(**kw: Any) -> dict[str, Any]:
    """Run the whole pipeline: encode (and encode-video, condition, encode-audio), denoise, upsample, refine,
    decode, decode audio, vocode, mux.
    Every stage whose artifact is already cached is skipped."""
    output_path, output_audio, force = kw.pop("output_path"), kw.pop("output_audio"), kw.pop("force")
    no_preview = kw.pop("no_preview", False)
    run = kw.pop("run")
    if output_path is None and run:  # a rerun by name writes where the run wrote
        saved = (State.store().load_run(_run_name(run, None)) or {}).get("output_path")
        output_path = Path(saved) if saved else None
    output_path = output_path or Path("out") / "ltx.mp4"
    store, name, nodes, opts, files = _plan(run, output_path, output_audio, force, **kw)
    return _run_all(store, name, nodes, opts, files, (output_path, output_audio), force, no_preview)


def _run_all(store, name, nodes, opts, files, outputs: tuple, force: bool, no_preview: bool) -> dict:
    """Record the run, compute what is missing (everything with --force), write the outputs and the preview."""
    from ltx.weights import tiny
    from stages import preview

    output_path, output_audio = outputs
    _record(store, name, nodes, opts, output_path)
    if force:
        for node in nodes.values():
            ensure(store, node, force=True, echo=echo)
    _write_outputs(store, nodes, output_path, output_audio)
    sheet = None if no_preview else preview.beside(store, nodes, output_path)
    also = f" and the preview {sheet}" if sheet else ""
    echo(f"wrote {output_path}{also} (run {name}; `ltx status {name}` shows its stages)")
    if files.tiny_variant is not None:
        echo(f"note: {tiny.NOTICE}")
    paths = [p for p in (output_path, output_audio, sheet) if p]
    keys = {label: n.key for label, n in nodes.items()}
    progress.output(keys, name, paths, show_keys=False)
    return {"run": name, "paths": paths, "keys": keys}


generate.__signature__ = _signature(_options, _generate_only)


# ---- retake and extend: a source's latents, a span regenerated ----------------------------------------
# shared options that do not apply: the size, length and rate are the source's; no image conditioning
NOT_FOR_SOURCES = {"run", "height", "width", "num_frames", "frame_rate", "image", "image_crf"}
NOT_FOR_SOURCES |= {"distilled_lora", "spatial_upsampler_path", "video_conditioning"}
NOT_FOR_SOURCES |= {"conditioning_attention_mask", "skip_stage_2"}


def _source_arg(
    source: Annotated[
        str,
        typer.Argument(
            help="What to start from: a run name (its final latents, no decode/encode round trip), an artifact "
            "key, or a video file (.mp4, .mov, .mkv; its audio track too)."
        ),
    ],
) -> None:
    pass


def _retake_only(
    start_time: Annotated[
        float | None, typer.Option("--start-time", help="Start of the span to regenerate, in seconds.")
    ] = None,
    end_time: Annotated[float | None, typer.Option("--end-time", help="End of the span, in seconds.")] = None,
    keep_video: Annotated[
        bool, typer.Option("--keep-video", help="Keep the source's video; regenerate only the span's audio.")
    ] = False,
    keep_audio: Annotated[
        bool, typer.Option("--keep-audio", help="Keep the source's audio; regenerate only the span's video.")
    ] = False,
) -> None:
    pass


def _extend_only(
    extend_seconds: Annotated[
        float | None,
        typer.Option("--seconds", help="Seconds to generate past the end (rounded to whole 8-frame steps)."),
    ] = None,
) -> None:
    pass


def _from_source(kind: str, kw: dict[str, Any]) -> dict[str, Any]:
    """`ltx retake` / `ltx extend`: SOURCE resolved (a run's final latents' key, or the video file), the
    source run's model unless one is given; the run is named after --output-path (default
    out/<source>_<kind>.mp4)."""
    from stages import options

    output_path, output_audio, force = kw.pop("output_path"), kw.pop("output_audio"), kw.pop("force")
    no_preview = kw.pop("no_preview", False)
    text = kw.pop("source")
    ref, stored, audio_ref = options.find_source(State.store(), text)
    if kw.get("keep_audio") and stored.get("no_audio"):
        raise LtxError(
            f"--keep-audio: run {text} was made with --no-audio, so it has no audio to keep; drop --keep-audio "
            "(the audio is then generated with the span)"
        )
    if output_path is None:
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", Path(text).stem).lstrip("._-") or "source"
        output_path = Path("out") / f"{stem}_{kind}.mp4"
    for name in ("model", "checkpoint_path", "gemma_root"):  # the model the source run was made with
        if kw.get(name) is None and stored.get(name) is not None:
            kw[name] = stored[name]
    store, name, nodes, opts, files = _plan(
        None, output_path, output_audio, force, source=ref, source_audio=audio_ref, **kw
    )
    return _run_all(store, name, nodes, opts, files, (output_path, output_audio), force, no_preview)


def retake(**kw: Any) -> dict[str, Any]:
    """Regenerate a time span (--start-time .. --end-time) of a run or a video file, keeping the rest
    (the reference's RetakePipeline): encode (+ encode-video, encode-audio for a file), retake, decode,
    decode audio, vocode, mux."""
    return _from_source("retake", kw)


def extend(**kw: Any) -> dict[str, Any]:
    """Continue a run or a video file for --seconds past its end (this project's own: the retake's masking
    with the span after the end), keeping what is there."""
    return _from_source("extend", kw)


def _source_signature(own) -> inspect.Signature:
    shared = [p for p in inspect.signature(_options).parameters.values() if p.name not in NOT_FOR_SOURCES]
    first = list(inspect.signature(_source_arg).parameters.values())
    mine = list(inspect.signature(own).parameters.values())
    return inspect.Signature(
        first + mine + shared + list(inspect.signature(_generate_only).parameters.values())
    )


retake.__signature__ = _source_signature(_retake_only)
extend.__signature__ = _source_signature(_extend_only)


def status(**kw: Any) -> None:
    """Show each stage of a run as cached, or as what would run and why; with options (those of
    `ltx generate`), for the run changed by them. Runs nothing and writes nothing."""
    from stages import pipeline

    run = kw.pop("run")
    if not run:
        raise LtxError("ltx status needs a run name: ltx status RUN [options]; `ltx cache ls` lists runs")
    store = State.store()
    info = store.load_run(run)
    if info is None:
        names = ", ".join(store.runs()) or "none yet"
        raise LtxError(f"no run named {run!r}; runs: {names}")
    nodes, _, _ = pipeline.build(_options_from(kw, info.get("options", {})), store, preflight=False)
    labels = {n.key: label for label, n in nodes.items()}
    recipes = info.get("recipes", {})
    for label, node in nodes.items():
        key, recorded = node.key, info.get("stages", {}).get(label)
        why = _why_changed(recipes.get(label, {}), node, labels) if recorded and recorded != key else None
        if store.exists(key):
            state = "cached"
            text = f"cached   {key[:8]}" + (f" (was {recorded[:8]}: {why})" if why else "")
        elif why:
            state, text = "stale", f"stale    {recorded[:8]} -> {key[:8]} (would run: {why})"
        else:
            state, text = "missing", f"missing  {key[:8]} (would run: not in the cache)"
        event = {"state": state, "key": key, **({"recorded": recorded, "why": why} if why else {})}
        progress.line(f"{label:15s} {text}", event="status", stage=label, **event)


status.__signature__ = inspect.signature(_options)


def _short(value: Any) -> str:
    text = "none" if value is None else str(list(value) if isinstance(value, tuple) else value)
    return text if len(text) <= 24 else text[:21] + "..."


def _changes(name: str, old: Any, new: Any) -> str:
    if isinstance(old, dict) and isinstance(new, dict):  # a guider: name its changed fields
        keys = [k for k in new if old.get(k) != new[k]] + [k for k in old if k not in new]
        return ", ".join(_changes(f"{name}.{k}", old.get(k), new.get(k)) for k in keys)
    return f"{name} {_short(old)} -> {_short(new)}"


def _why_changed(old: dict, node: Node, labels: dict[str, str]) -> str:
    """What differs between a stage's recorded recipe and its new one: "seed 10 -> 11", "tiling default
    -> aggressive", "upstream denoise changed", "stage version 1 -> 2", "the checkpoint file changed"."""
    if old.get("version") != node.stage.version:
        return f"stage version {old.get('version')} -> {node.stage.version}"
    before = old.get("params", {})
    after = json.loads(json.dumps(dataclasses.asdict(node.params)))  # as recorded: tuples become lists
    changed = [k for k in after if before.get(k) != after[k]] + [k for k in before if k not in after]
    if changed:
        return ", ".join(_changes(k, before.get(k), after.get(k)) for k in changed)
    files = sorted(k for k in set(old.get("externals", {})) | set(node.externals)
                   if old.get("externals", {}).get(k) != node.externals.get(k))  # fmt: skip
    if files:
        return ", ".join(f"the {k} file changed" for k in files)
    inputs = [n for n, k in node.input_keys.items() if old.get("inputs", {}).get(n) != k]
    if inputs:
        return ", ".join(f"upstream {labels.get(node.input_keys[n], n)} changed" for n in inputs)
    return "its recipe changed"


def register(app: typer.Typer) -> None:
    app.command("generate")(_in_session(generate))
    app.command("retake")(_in_session(retake))
    app.command("extend")(_in_session(extend))
    for name, (label, doc) in STEP_COMMANDS.items():
        app.command(name)(_in_session(_make_step(label, doc)))
    app.command("status")(_in_session(status))


def preprocess_argv() -> None:
    sys.argv[1:] = _split_multi(sys.argv[1:])
