"""Bad input: every case is one line "error: ..." naming the value and the fix, exit code 1, and nothing
written to the cache. One table (CASES) holds them all; add a row to add a case.

CLI cases run `stages.cli.main` in-process (the same code path as the `ltx` entry point, much cheaper
than a subprocess per case); a few run as real subprocesses too, to pin the contract end to end.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

PROMPT = ["--prompt", "a red fox trots through fresh snow"]
SMALL = ["--height", "64", "--width", "128", "--num-frames", "9"]
IC = ["--pipeline", "ic-lora", "--video-conditioning"]
IC_SIZE = ["--height", "128", "--width", "256"]  # the tiny IC-LoRA's references: a quarter size, 32x64
# the tiny LTX-2.5's transformer, audio VAE, upsampler and duration head as split files (fixture names)
SPLIT25 = [
    "--transformer-path",
    "{t25_lone}",
    "--audio-vae-path",
    "{t25_audio_vae}",
    "--spatial-upsampler-path",
    "{t25_upsampler}",
    "--duration-head-path",
    "{t25_duration}",
]


@dataclass(frozen=True)
class Case:
    id: str
    args: (
        Callable[[dict], list[str]] | list[str]
    )  # CLI arguments (after --cache-dir), given the fixture paths
    needle: str  # must appear in the one error line
    cache: str = (
        "empty"  # "empty": a fresh cache dir; "keys": one holding two artifacts with a common key prefix
    )
    subprocess: bool = False  # also run as a real `python -m stages.cli` subprocess
    env: tuple[tuple[str, str], ...] = ()  # environment variables set for the case


def command(name: str, out: str, *extra: str, prompt: bool = True) -> Callable[[dict], list[str]]:
    """`ltx NAME` with a small size, the prompt, and `extra` (fixture names in braces are substituted), writing
    to the fixture's path `out`."""

    def build(fx: dict) -> list[str]:
        return [
            name,
            *(PROMPT if prompt else []),
            *SMALL,
            *[a.format(**fx) for a in extra],
            "--output-path",
            fx[out],
        ]

    return build


def gen(*extra: str, prompt: bool = True) -> Callable[[dict], list[str]]:
    """`generate` with a small size, the prompt, and `extra`."""
    return command("generate", "out", *extra, prompt=prompt)


def a2v(audio: str, *extra: str) -> Callable[[dict], list[str]]:
    """`generate --pipeline a2v --audio-path AUDIO` with a small size and `extra`."""
    return gen("--pipeline", "a2v", "--audio-path", audio, *extra)


def sweep(*extra: str, prompt: bool = True) -> Callable[[dict], list[str]]:
    """`sweep` with a small size, the prompt, and `extra` into the fixture's sweep folder."""
    return command("sweep", "sweep", *extra, prompt=prompt)


def arg(*a: str) -> Callable[[dict], list[str]]:
    return lambda fx: [x.format(**fx) for x in a]


CASES: list[Case] = [
    # prompt
    Case("empty-prompt", gen("--prompt", "", prompt=False), "--prompt is empty", subprocess=True),
    Case("whitespace-prompt", gen("--prompt", "  \t ", prompt=False), "--prompt is empty"),
    # frames: 1 + 8k, with the nearest valid ones suggested
    Case("frames-10", gen("--num-frames", "10"), "use 9 or 17", subprocess=True),
    Case("frames-100", gen("--num-frames", "100"), "use 97 or 105"),
    Case("frames-zero", gen("--num-frames", "0"), "--num-frames 0"),
    # the memory pre-flight: a stage estimated above the machine's memory (or --memory-budget) is refused
    Case("frames-huge", gen("--num-frames", "1000001"), "but this machine has", subprocess=True),
    Case(
        "frames-over-budget",
        gen("--num-frames", "100001", "--memory-budget", "8"),
        "--memory-budget 8.0 GB is below the",
    ),
    Case("frames-negative", gen("--num-frames", "-7"), "--num-frames -7"),
    # the video decoder: one the model has (LTX-2.0/2.3 have the conv decoder only)
    Case("decoder-diffusion-on-2.0", gen("--decoder", "diffusion"), "has no diffusion video decoder"),
    Case("decoder-unknown", gen("--decoder", "vq"), "--decoder 'vq' is unknown"),
    # resolution: divisible by 64 (two-stage) or 32 (one-stage), and within the positional range
    Case("height-100-two-stage", gen("--height", "100"), "use 64 or 128"),
    Case("width-96-two-stage", gen("--width", "96"), "divisible by 64"),
    Case("height-48-one-stage", gen("--pipeline", "dev", "--height", "48"), "divisible by 32"),
    Case("height-negative", gen("--height", "-64"), "--height -64"),
    Case("width-above-positional-range", gen("--width", "4096"), "positional range"),
    Case("height-above-positional-range", gen("--pipeline", "dev", "--height", "2080"), "positional range"),
    # steps, guidance, strengths, frame rate, seed
    Case("steps-zero", gen("--pipeline", "dev", "--steps", "0"), "steps 0 must be an integer >= 1"),
    Case("steps-negative", gen("--pipeline", "dev", "--steps", "-3"), "steps -3 must be an integer >= 1"),
    Case("steps-distilled", gen("--steps", "4"), "--steps does not apply"),
    Case("cfg-nan", gen("--cfg-scale", "nan"), "--video-cfg-guidance-scale nan must be a finite number"),
    Case("audio-cfg-inf", gen("--audio-cfg-scale", "inf"), "--audio-cfg-guidance-scale inf"),
    Case("stg-minus-inf", gen("--stg-scale", "-inf"), "--stg-scale -inf"),
    Case("frame-rate-nan", gen("--frame-rate", "nan"), "--frame-rate nan"),
    Case("frame-rate-zero", gen("--frame-rate", "0"), "--frame-rate 0"),
    Case("image-strength-above-1", gen("--image", "{png}", "0", "1.5"), "outside [0, 1]"),
    Case("image-strength-negative", gen("--image", "{png}", "0", "-0.1"), "outside [0, 1]"),
    Case("image-strength-nan", gen("--image", "{png}", "0", "nan"), "must be a finite number"),
    Case("image-frame-outside", gen("--image", "{png}", "20", "1.0"), "outside the video"),
    Case("lora-strength-nan", gen("--lora", "{lora}", "nan"), "must be a finite number"),
    Case("seed-negative", gen("--seed", "-1"), "--seed -1 is out of range"),
    Case("seed-too-large", gen("--seed", str(2**63)), "is out of range"),
    Case("unknown-pipeline", gen("--pipeline", "turbo"), "--pipeline 'turbo' is unknown"),
    # images
    Case("image-missing", gen("--image", "{missing}.png", "0", "1.0"), "does not exist", subprocess=True),
    Case("image-directory", gen("--image", "{dir}", "0", "1.0"), "is not a file"),
    Case("image-not-an-image", gen("--image", "{text_png}", "0", "1.0"), "is not a readable image"),
    Case("image-empty-file", gen("--image", "{empty_png}", "0", "1.0"), "is not a readable image"),
    Case("image-truncated-png", gen("--image", "{trunc_png}", "0", "1.0"), "is not a readable image"),
    Case("image-truncated-jpeg", gen("--image", "{trunc_jpg}", "0", "1.0"), "is not a readable image"),
    # --pipeline a2v's audio (stages.validate.audio_file decodes it as the encode-audio stage will)
    Case("a2v-without-audio-path", gen("--pipeline", "a2v"), "--pipeline a2v needs --audio-path FILE"),
    Case("audio-missing", a2v("{missing}.wav"), "does not exist"),
    Case("audio-not-audio", a2v("{text_wav}"), "is not a readable audio file", subprocess=True),
    Case("audio-empty-file", a2v("{empty_png}"), "is not a readable audio file"),
    Case("audio-truncated-header", a2v("{trunc_wav_head}"), "is not a readable audio file"),
    Case("audio-truncated-data", a2v("{trunc_wav}"), "is truncated"),
    Case("audio-no-samples", a2v("{silent_wav}"), "holds no audio samples"),
    Case("audio-video-without-sound", a2v("{video_only_mp4}"), "has no audio stream"),
    Case("audio-four-channels", a2v("{quad_wav}"), "4 channels; only mono and stereo"),
    Case("audio-too-short", a2v("{short_wav}"), "9 frames at 24 fps need at least 0.320 s"),
    Case("audio-start-past-the-end", a2v("{long_wav}", "--audio-start-time", "9"), "no audio samples after"),
    Case("audio-start-too-late", a2v("{long_wav}", "--audio-start-time", "0.3"), "need at least 0.320 s"),
    Case("audio-start-negative", a2v("{long_wav}", "--audio-start-time", "-1"), "must be >= 0"),
    Case("audio-start-nan", a2v("{long_wav}", "--audio-start-time", "nan"), "must be a finite number"),
    Case("audio-duration-zero", a2v("{long_wav}", "--audio-max-duration", "0"), "must be > 0"),
    Case(
        "audio-duration-too-short",
        a2v("{long_wav}", "--audio-max-duration", "0.2"),
        "(--audio-max-duration 0.2)",
    ),
    Case("audio-path-without-a2v", gen("--audio-path", "{long_wav}"), "applies to --pipeline a2v only"),
    Case(
        "a2v-audio-guidance",
        a2v("{long_wav}", "--audio-cfg-guidance-scale", "3"),
        "--audio-cfg-guidance-scale do not apply to --pipeline a2v",
    ),
    # hq and the x1.5 upsampler
    Case(
        "hq-strength-without-hq",
        gen("--distilled-lora-strength-stage-1", "0.3"),
        "--distilled-lora-strength-stage-1 applies to --pipeline hq only",
    ),
    Case(
        "hq-strength-nan",
        gen("--pipeline", "hq", "--distilled-lora-strength-stage-2", "nan"),
        "--distilled-lora-strength-stage-2 nan must be a finite number",
    ),
    Case(
        "x15-size-off-grid",
        gen("--spatial-upsampler-path", "tiny:x1.5"),
        "--height 64 must be divisible by 96 for two-stage pipelines with the x1.5 upsampler",
    ),
    Case("tiny-upsampler-unknown", gen("--spatial-upsampler-path", "tiny:x3"), "use tiny:x2 or tiny:x1.5"),
    # model directories
    Case("model-not-a-directory", gen("--model", "{missing}"), "is neither 'tiny' nor a directory"),
    Case(
        "model-repo-not-cached",
        gen("--model", "Lightricks/LTX-2"),
        "download it with `huggingface-cli download Lightricks/LTX-2`",
        subprocess=True,
    ),
    Case("checkpoint-path-missing", gen("--checkpoint-path", "{missing}"), "--checkpoint-path"),
    Case(
        "checkpoint-path-with-tiny",
        gen("--model", "tiny", "--checkpoint-path", "{lora}"),
        "apply to real weights",
    ),
    Case("model-missing-checkpoint", gen("--model", "{m_no_ckpt}"), "no LTX-2 checkpoint in"),
    Case("model-missing-upsampler", gen("--model", "{m_no_up}"), "spatial upsampler", subprocess=True),
    Case("model-missing-gemma", gen("--model", "{m_no_gemma}"), "Gemma-3 directory"),
    Case("model-gemma-without-weights", gen("--model", "{m_gemma_no_weights}"), "Gemma-3 directory"),
    Case("model-gemma-without-config", gen("--model", "{m_gemma_no_config}"), "lacks config.json"),
    Case("checkpoint-truncated", gen("--model", "{m_trunc}"), "lies outside the file"),
    Case("checkpoint-no-config", gen("--model", "{m_no_config}"), "'config' has a 'transformer' section"),
    Case(
        "checkpoint-malformed-config",
        gen("--model", "{m_bad_config}"),
        "'config' has a 'transformer' section",
    ),
    Case("checkpoint-wrong-dtype", gen("--model", "{m_dtype}"), "expected a float type"),
    Case("checkpoint-wrong-shape", gen("--model", "{m_shape}"), "has shape"),
    Case("upsampler-huge-header", gen("--model", "{m_up_huge}"), "header claims"),
    Case("upsampler-truncated-to-4-bytes", gen("--model", "{m_up_tiny}"), "is truncated"),
    Case("upsampler-no-config", gen("--model", "{m_up_no_config}"), "has no 'config' metadata"),
    Case("upsampler-malformed-header", gen("--model", "{m_up_bad_json}"), "malformed safetensors header"),
    Case("gemma-truncated-weights", gen("--model", "{m_gemma_trunc}"), "Gemma weights"),
    # which Gemma: the checkpoint's own (LTX-2.0/2.3: a Gemma 3; LTX-2.5: its gemma_source_checkpoint)
    Case(
        "gemma4-with-a-20-checkpoint",
        gen("--model", "{tiny_model}", "--gemma-root", "{gemma4}"),
        "needs a Gemma 3 folder, but",
        subprocess=True,
    ),
    Case(
        "gemma-root-not-a-text-encoder-file",
        gen("--model", "{tiny_model}", "--gemma-root", "{lora}"),
        "has no 'gemma_config' metadata",
    ),
    Case(
        "gemma3-with-a-25-checkpoint",
        gen(*SPLIT25, "--text-encoder-path", "{tiny_model}/gemma", "--video-vae-path", "{t25_video_vae}"),
        "needs the Gemma with gemma_version 'tiny-gemma4-ltx-v1', but",
        subprocess=True,
    ),
    # split checkpoints (LTX-2.5): every component a run reads is found, each file holds its component
    Case(
        "split-missing-video-vae",
        gen(*SPLIT25, "--text-encoder-path", "{gemma4}"),
        "pass --video-vae-path FILE",
    ),
    Case(
        "split-missing-audio-vae",
        gen(
            *SPLIT25[:2],
            *SPLIT25[4:],
            "--text-encoder-path",
            "{gemma4}",
            "--video-vae-path",
            "{t25_video_vae}",
        ),
        "pass --audio-vae-path FILE",
    ),
    Case(
        "split-audio-vae-is-another-file",
        gen("--transformer-path", "{t25_transformer}", "--audio-vae-path", "{t25_duration}"),
        "holds no audio VAE",
    ),
    Case(
        "split-video-vae-is-another-file",
        gen("--transformer-path", "{t25_transformer}", "--video-vae-path", "{t25_audio_vae}"),
        "holds no video VAE",
    ),
    Case(
        "split-transformer-and-checkpoint",
        gen("--transformer-path", "{t25_transformer}", "--checkpoint-path", "{t25_transformer}"),
        "both name the transformer",
    ),
    Case(
        "split-25-without-duration-head",
        lambda fx: [
            "generate",
            *PROMPT,
            *[a.format(**fx) for a in SPLIT25[:6]],  # no --duration-head-path
            "--text-encoder-path",
            fx["gemma4"],
            "--video-vae-path",
            fx["t25_video_vae"],
            "--height",
            "64",
            "--width",
            "128",
            "--output-path",
            fx["out"],
        ],
        "pass --num-frames, or --duration-head-path FILE",
    ),
    # the duration predicted from the prompt (LTX-2.5's duration head)
    Case(
        "auto-duration-and-num-frames",
        gen("--model", "tiny-2.5", "--auto-duration", "1", "5"),
        "pass one of them",
    ),
    Case(
        "auto-duration-without-head",
        lambda fx: ["generate", *PROMPT, "--auto-duration", "1", "2", "--output-path", fx["out"]],
        "has no duration head",
    ),
    Case(
        "auto-duration-min-above-max",
        lambda fx: [
            "generate",
            *PROMPT,
            "--model",
            "tiny-2.5",
            "--auto-duration",
            "5",
            "1",
            "--output-path",
            fx["out"],
        ],
        "MIN 5 must be <= MAX 1",
    ),
    Case(
        "auto-duration-one-value",
        lambda fx: [
            "generate",
            *PROMPT,
            "--model",
            "tiny-2.5",
            "--auto-duration",
            "5",
            "--output-path",
            fx["out"],
        ],
        "--auto-duration needs MIN_SECONDS MAX_SECONDS",
    ),
    # pipelines without a duration head in 1.2.0 (as a2v): their length is --num-frames
    Case(
        "auto-duration-keyframes",
        lambda fx: [
            "generate",
            *PROMPT,
            "--model",
            "tiny-2.5",
            "--pipeline",
            "keyframes",
            "--image",
            fx["png"],
            "0",
            "1.0",
            "--auto-duration",
            "1",
            "2",
            "--output-path",
            fx["out"],
        ],  # fmt: skip
        "--auto-duration does not apply to --pipeline keyframes (the keyframes' frames set its timing)",
    ),
    Case(
        "auto-duration-ic-lora",
        lambda fx: [
            "generate",
            *PROMPT,
            "--model",
            "tiny-2.5",
            "--pipeline",
            "ic-lora",
            "--video-conditioning",
            fx["mp4"],
            "1.0",
            "--auto-duration",
            "1",
            "2",
            "--output-path",
            fx["out"],
        ],  # fmt: skip
        "--auto-duration does not apply to --pipeline ic-lora (the reference video sets its length); pass --num-frames",
    ),
    Case(
        "ic-lora-tiny25-has-none",
        gen("--model", "tiny-2.5", "--pipeline", "ic-lora", "--video-conditioning", "{mp4}", "1.0"),
        "needs --lora IC_LORA.safetensors [STRENGTH] (an IC-LoRA for this model; the tiny-2.5 model has none",
    ),
    # the prompt enhancer is a Gemma 3 instruct folder (LTX-2.5's Gemma 4 cannot generate)
    Case(
        "enhancer-is-gemma4",
        gen("--enhance-prompt", "--prompt-enhancer-gemma-root", "{gemma4}"),
        "is model_type 'gemma4_unified'; prompt enhancement runs on a Gemma 3",
    ),
    Case(
        "enhancer-missing",
        gen("--enhance-prompt", "--prompt-enhancer-gemma-root", "{missing}"),
        "--prompt-enhancer-gemma-root",
    ),
    Case(
        "enhancer-without-weights",
        gen("--enhance-prompt", "--prompt-enhancer-gemma-root", "{m_gemma_no_weights}/gemma"),
        "lacks the tokenizer files or model*.safetensors",
    ),
    # LoRAs
    Case("lora-missing", gen("--lora", "{missing}.safetensors"), "does not exist"),
    Case("lora-shape-mismatch", gen("--lora", "{lora_bad_shape}"), "does not fit the weight"),
    Case("lora-rank-mismatch", gen("--lora", "{lora_bad_rank}"), "does not fit the weight"),
    Case("lora-unknown-module", gen("--lora", "{lora_bad_module}"), "the model has no weight"),
    Case("lora-half-pair", gen("--lora", "{lora_half}"), "has no lora_B.weight"),
    Case("lora-truncated", gen("--lora", "{lora_trunc}"), "lies outside the file"),
    Case("lora-huge-header", gen("--lora", "{lora_huge}"), "header claims"),
    Case("lora-not-safetensors", gen("--lora", "{text_png}"), "header claims"),
    # keyframes and ic-lora (issue #28)
    Case("keyframes-no-image", gen("--pipeline", "keyframes"), "needs at least one --image"),
    Case(
        "keyframes-frame-outside",
        gen("--pipeline", "keyframes", "--image", "{png}", "0", "1.0", "--image", "{png}", "9", "1.0"),
        "frame 9 is outside the video (0..8)",
    ),
    Case("iclora-no-reference", gen("--pipeline", "ic-lora"), "needs a reference video", subprocess=True),
    Case("iclora-reference-missing", gen(*IC, "{missing}.mp4", "1.0", *IC_SIZE), "does not exist"),
    Case("iclora-reference-text", gen(*IC, "{text_mp4}", "1.0", *IC_SIZE), "is not a readable video"),
    Case(
        "iclora-reference-truncated",
        gen(*IC, "{trunc_mp4}", "1.0", *IC_SIZE),
        "is not a readable video",
        subprocess=True,
    ),
    Case("iclora-reference-off-grid", gen(*IC, "{mp4}", "1.0"), "is not a multiple of 32"),
    Case("iclora-reference-strength", gen(*IC, "{mp4}", "1.5", *IC_SIZE), "strength 1.5 is outside [0, 1]"),
    Case("iclora-reference-no-strength", gen(*IC, "{mp4}"), "--video-conditioning needs PATH STRENGTH"),
    Case(
        "iclora-five-references",
        gen(*[a for s in ("1.0", "0.9", "0.8", "0.7", "0.6") for a in (*IC, "{mp4}", s)], *IC_SIZE),
        "is given 5 times; at most 4",
    ),
    Case(
        "iclora-mask-frames",
        gen(*IC, "{mp4}", "1.0", "--conditioning-attention-mask", "{png}", "0.5", *IC_SIZE),
        "do not fit a reference video of 9 frames",
    ),
    Case(
        "iclora-mask-undecodable",
        gen(*IC, "{mp4}", "1.0", "--conditioning-attention-mask", "{text_mp4}", "0.5", *IC_SIZE),
        "is not a readable video",
    ),
    Case("iclora-steps", gen(*IC, "{mp4}", "1.0", *IC_SIZE, "--steps", "4"), "--steps does not apply"),
    Case(
        "video-conditioning-distilled",
        gen("--video-conditioning", "{mp4}", "1.0"),
        "applies to --pipeline ic-lora",
    ),
    Case("skip-stage-2-distilled", gen("--skip-stage-2"), "--skip-stage-2 applies to --pipeline ic-lora"),
    Case("encode-video-distilled", arg("encode-video", *PROMPT), "is not part of --pipeline distilled"),
    # the cache
    Case(
        "cache-unwritable",
        lambda fx: ["--cache-dir", fx["blocker"] + "/cache", *gen()(fx)],
        "is not writable",
        subprocess=True,
    ),
    Case("key-prefix-unknown", arg("cache", "show", "{unknown_prefix}"), "no artifact matches", cache="keys"),
    Case(
        "key-prefix-ambiguous",
        arg("cache", "show", "{ambiguous_prefix}"),
        "give more digits",
        cache="keys",
        subprocess=True,
    ),
    Case("key-prefix-too-short", arg("cache", "show", "ab"), "at least 4 hex digits", cache="keys"),
    Case("key-prefix-not-hex", arg("cache", "rm", "xyz123"), "at least 4 hex digits", cache="keys"),
    Case(
        "verify-unknown-prefix",
        arg("cache", "verify", "{unknown_prefix}"),
        "no artifact matches",
        cache="keys",
    ),
    # run names
    Case("run-name-dotdot", lambda fx: ["generate", "..", *gen()(fx)[1:]], "is not allowed"),
    Case(
        "run-name-parent",
        lambda fx: ["denoise", "../escape", *gen()(fx)[1:]],
        "is not allowed",
        subprocess=True,
    ),
    Case("run-name-slash", lambda fx: ["generate", "a/b/c", *gen()(fx)[1:]], "is not allowed"),
    Case("run-name-backslash", lambda fx: ["generate", "a\\b", *gen()(fx)[1:]], "is not allowed"),
    Case("status-run-name-dotdot", arg("status", "../../etc"), "is not allowed"),
    # ltx sweep: seeds, prompts, lists, executors (all before any graph runs)
    Case("sweep-seeds-reversed", sweep("--seeds", "8-1"), "the range 8-1 is empty", subprocess=True),
    Case("sweep-seeds-not-a-number", sweep("--seeds", "1-x"), "'1-x' is not a seed or range"),
    Case("sweep-seeds-repeated", sweep("--seeds", "1-3,2"), "repeats 2"),
    Case("sweep-seeds-too-large", sweep("--seeds", str(2**32)), "is out of range"),
    Case("sweep-no-prompt", sweep(prompt=False), "ltx sweep needs a prompt"),
    Case("sweep-prompts-empty-file", sweep("--prompts", "{no_prompts}", prompt=False), "has no prompts"),
    Case("sweep-prompts-blank-lines", sweep("--prompts", "{blank_prompts}", prompt=False), "has no prompts"),
    Case("sweep-prompts-missing-file", sweep("--prompts", "{missing}.txt"), "cannot be read"),
    Case("sweep-prompt-twice", sweep("--prompt", PROMPT[1]), "is given twice"),
    Case("sweep-list-for-single-option", sweep("--memory-budget", "8,16"), "takes one value, not a list"),
    Case(
        "sweep-image-strength-list", sweep("--image", "{png}", "0", "0.5,1.0"), "takes one FRAME and STRENGTH"
    ),
    Case("sweep-list-not-numbers", sweep("--cfg-scale", "2,x"), "'x' is not a number"),
    Case("sweep-list-repeated", sweep("--num-frames", "9,9"), "repeats 9"),
    Case("sweep-lora-strengths-not-numbers", sweep("--lora", "{lora}", "0.5,y"), "'y' is not a number"),
    Case("sweep-one-bad-combination", sweep("--height", "64,100"), "use 64 or 128", subprocess=True),
    Case("sweep-output-is-a-file", lambda fx: [*sweep()(fx)[:-1], fx["out"]], "must be a folder"),
    Case("sweep-unknown-executor", sweep("--executor", "slurm"), "--executor 'slurm' is unknown"),
    Case("sweep-address-without-ray", sweep("--address", "auto"), "applies to --executor ray"),
    Case("sweep-negative-retries", sweep("--executor", "ray", "--retries", "-1"), "--retries -1"),
    # environment settings (ltx.settings)
    Case(
        "env-cpu-gemm",
        gen(),
        "LTX_CPU_GEMM='fast' is not one of auto, mkl, openblas",
        env=(("LTX_CPU_GEMM", "fast"),),
        subprocess=True,
    ),
    Case("env-dtype", gen(), "LTX_DTYPE='f8' is not one of float32", env=(("LTX_DTYPE", "f8"),)),
    Case(
        "env-dtype-denoise",
        arg("denoise", "--prompt", "a fox"),
        "LTX_DTYPE='int8'",
        env=(("LTX_DTYPE", "int8"),),
    ),
]


# ---- fixtures: the bad files --------------------------------------------------------------------------
def _rewrite_header(src: Path, dst: Path, edit: Callable[[dict], None]) -> None:
    """Copy a safetensors file with its JSON header edited (tensor data kept byte for byte)."""
    raw = src.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    edit(header)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    dst.write_bytes(struct.pack("<Q", len(head)) + head + raw[8 + n :])


def _model_variant(base: Path, root: Path, name: str, change: Callable[[Path], None]) -> str:
    d = root / name
    shutil.copytree(base, d)
    change(d)
    return str(d)


@pytest.fixture(scope="module")
def fx(tmp_path_factory) -> dict:
    import soundfile
    from PIL import Image

    from ltx.weights import tiny

    root = tmp_path_factory.mktemp("bad_inputs")
    f: dict = {"out": str(root / "out" / "x.mp4"), "missing": str(root / "no-such-file"), "dir": str(root)}
    f["sweep"] = str(root / "out" / "sweep")
    (root / "no_prompts.txt").write_text("")
    (root / "blank_prompts.txt").write_text("\n   \n\t\n")
    f.update(no_prompts=str(root / "no_prompts.txt"), blank_prompts=str(root / "blank_prompts.txt"))
    Image.new("RGB", (64, 48), (200, 10, 10)).save(root / "ok.png")
    f["png"] = str(root / "ok.png")
    data = (root / "ok.png").read_bytes()
    (root / "trunc.png").write_bytes(data[: len(data) // 2])
    f["trunc_png"] = str(root / "trunc.png")
    Image.new("RGB", (64, 48), (10, 200, 10)).save(root / "ok.jpg")
    data = (root / "ok.jpg").read_bytes()
    (root / "trunc.jpg").write_bytes(data[: len(data) // 2])
    f["trunc_jpg"] = str(root / "trunc.jpg")
    (root / "text.png").write_text("this is not an image\n")
    f["text_png"] = str(root / "text.png")
    (root / "empty.png").write_bytes(b"")
    f["empty_png"] = str(root / "empty.png")
    soundfile.write(str(root / "ok.wav"), np.zeros((1600, 1), np.float32), 16000)
    data = (root / "ok.wav").read_bytes()
    (root / "trunc.wav").write_bytes(data[: len(data) // 2])
    (root / "trunc_head.wav").write_bytes(data[:30])
    soundfile.write(str(root / "silent.wav"), np.zeros((0, 1), np.float32), 16000)
    (root / "text.wav").write_text("not audio")
    soundfile.write(str(root / "quad.wav"), np.zeros((16000, 4), np.float32), 16000)
    soundfile.write(str(root / "long.wav"), np.zeros((8000, 2), np.float32), 16000)  # 0.5 s
    import imageio_ffmpeg

    video_only = root / "video_only.mp4"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i", "color=c=red:s=32x32:d=0.5",
         "-pix_fmt", "yuv420p", str(video_only)],
        check=True,
    )  # fmt: skip
    f.update(
        quad_wav=str(root / "quad.wav"),
        short_wav=str(root / "ok.wav"),  # 0.1 s
        long_wav=str(root / "long.wav"),
        video_only_mp4=str(video_only),
        trunc_wav=str(root / "trunc.wav"),
        trunc_wav_head=str(root / "trunc_head.wav"),
        silent_wav=str(root / "silent.wav"),
        text_wav=str(root / "text.wav"),
    )
    import av

    with av.open(str(root / "ok.mp4"), "w", format="mp4") as container:  # 9 frames of H.264
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for t in range(9):
            img = np.full((48, 64, 3), 20 * t, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = (root / "ok.mp4").read_bytes()
    (root / "trunc.mp4").write_bytes(data[: len(data) // 2])
    (root / "text.mp4").write_text("not a video\n")
    f.update(mp4=str(root / "ok.mp4"), trunc_mp4=str(root / "trunc.mp4"), text_mp4=str(root / "text.mp4"))
    blocker = root / "blocker"
    blocker.write_text("a file where the cache directory should be")
    f["blocker"] = str(blocker)

    # model directories derived from the tiny model's files (official layout)
    base = root / "tiny-model"
    tiny.create("2.0", base)
    f["tiny_model"] = str(base)
    t25 = tiny.create("2.5", root / "tiny-2.5")
    f["gemma4"] = str(t25 / "text_encoders" / "gemma4")
    # the tiny 2.5's split files, named as the options take them
    f.update(
        t25_transformer=str(t25 / "diffusion_models" / "transformer.safetensors"),
        t25_video_vae=str(t25 / "vae" / "video_vae.safetensors"),
        t25_audio_vae=str(t25 / "vae" / "audio_vae.safetensors"),
        t25_upsampler=str(t25 / "latent_upscale_models" / "spatial_upscaler_x2.safetensors"),
        t25_duration=str(t25 / "model_patches" / "duration_head.safetensors"),
    )
    lone = root / "lone-transformer"  # a split transformer file without its model folder around it
    lone.mkdir()
    shutil.copyfile(f["t25_transformer"], lone / "transformer.safetensors")
    f["t25_lone"] = str(lone / "transformer.safetensors")
    models = root / "models"
    models.mkdir()
    f["m_no_ckpt"] = _model_variant(base, models, "no-ckpt", lambda d: (d / "model.safetensors").unlink())
    f["m_no_up"] = _model_variant(base, models, "no-up", lambda d: (d / "upsampler.safetensors").unlink())
    f["m_no_gemma"] = _model_variant(base, models, "no-gemma", lambda d: shutil.rmtree(d / "gemma"))
    f["m_gemma_no_weights"] = _model_variant(
        base, models, "gemma-no-weights", lambda d: (d / "gemma" / "model.safetensors").unlink()
    )
    f["m_gemma_no_config"] = _model_variant(
        base, models, "gemma-no-config", lambda d: (d / "gemma" / "config.json").unlink()
    )

    def truncate(p: Path, keep: float | int) -> None:
        data = p.read_bytes()
        p.write_bytes(data[: int(len(data) * keep) if isinstance(keep, float) else keep])

    f["m_trunc"] = _model_variant(base, models, "trunc", lambda d: truncate(d / "model.safetensors", 0.6))
    f["m_gemma_trunc"] = _model_variant(
        base, models, "gemma-trunc", lambda d: truncate(d / "gemma" / "model.safetensors", 0.5)
    )
    f["m_up_tiny"] = _model_variant(
        base, models, "up-4-bytes", lambda d: truncate(d / "upsampler.safetensors", 4)
    )

    def huge(p: Path) -> None:
        data = bytearray(p.read_bytes())
        data[:8] = struct.pack("<Q", 1 << 60)
        p.write_bytes(bytes(data))

    f["m_up_huge"] = _model_variant(base, models, "up-huge", lambda d: huge(d / "upsampler.safetensors"))

    def bad_json(p: Path) -> None:
        data = bytearray(p.read_bytes())
        data[8] = ord("[")  # '{' -> '[': not a JSON object any more
        data[9:14] = b"\xff\xfe\x00\x01\x02"
        p.write_bytes(bytes(data))

    f["m_up_bad_json"] = _model_variant(
        base, models, "up-bad-json", lambda d: bad_json(d / "upsampler.safetensors")
    )

    def edit(name: str, fn: Callable[[dict], None]) -> Callable[[Path], None]:
        def change(d: Path) -> None:
            tmp = d / (name + ".tmp")
            _rewrite_header(d / name, tmp, fn)
            os.replace(tmp, d / name)

        return change

    def drop_config(h: dict) -> None:
        h["__metadata__"].pop("config")

    def break_config(h: dict) -> None:
        h["__metadata__"]["config"] = '{"transformer": {'

    def wrong_dtype(h: dict) -> None:
        name = next(
            k for k in sorted(h) if k.startswith("model.diffusion_model.") and h[k]["dtype"] == "BF16"
        )
        h[name]["dtype"] = "I16"

    def wrong_shape(h: dict) -> None:
        name = next(
            k
            for k in sorted(h)
            if k.startswith("model.diffusion_model.transformer_blocks.")
            and len(h[k]["shape"]) == 2
            and h[k]["shape"][0] != h[k]["shape"][1]
        )
        h[name]["shape"] = h[name]["shape"][::-1]

    f["m_no_config"] = _model_variant(base, models, "no-config", edit("model.safetensors", drop_config))
    f["m_bad_config"] = _model_variant(base, models, "bad-config", edit("model.safetensors", break_config))
    f["m_dtype"] = _model_variant(base, models, "dtype", edit("model.safetensors", wrong_dtype))
    f["m_shape"] = _model_variant(base, models, "shape", edit("model.safetensors", wrong_shape))
    f["m_up_no_config"] = _model_variant(
        base, models, "up-no-config", edit("upsampler.safetensors", drop_config)
    )

    # LoRAs derived from the tiny distilled LoRA (ComfyUI keys)
    lora = base / "distilled_lora.safetensors"
    f["lora"] = str(lora)

    def lora_variant(name: str, fn: Callable[[dict], None]) -> str:
        _rewrite_header(lora, root / name, fn)
        return str(root / name)

    def first(h: dict, suffix: str) -> str:
        return next(k for k in sorted(h) if k.endswith(suffix))

    def bad_shape(h: dict) -> None:  # A and B agree with each other, not with the weight (same byte count)
        a, b = first(h, ".lora_A.weight"), first(h, ".lora_B.weight")
        r, i = h[a]["shape"]
        o, _ = h[b]["shape"]
        h[a]["shape"], h[b]["shape"] = [r * 2, i // 2], [o // 2, r * 2]

    def bad_rank(h: dict) -> None:
        a = first(h, ".lora_A.weight")
        r, i = h[a]["shape"]
        h[a]["shape"] = [i, r]

    def bad_module(h: dict) -> None:
        for k in [k for k in h if ".transformer_blocks.0.attn1.to_k." in k]:
            h[k.replace(".to_k.", ".to_nowhere.")] = h.pop(k)

    def half(h: dict) -> None:
        h.pop(first(h, ".lora_B.weight"))

    f["lora_bad_shape"] = lora_variant("bad_shape.safetensors", bad_shape)
    f["lora_bad_rank"] = lora_variant("bad_rank.safetensors", bad_rank)
    f["lora_bad_module"] = lora_variant("bad_module.safetensors", bad_module)
    f["lora_half"] = lora_variant("half.safetensors", half)
    data = lora.read_bytes()
    (root / "lora_trunc.safetensors").write_bytes(data[: len(data) * 3 // 4])
    f["lora_trunc"] = str(root / "lora_trunc.safetensors")
    (root / "lora_huge.safetensors").write_bytes(struct.pack("<Q", 1 << 40) + data[8:])
    f["lora_huge"] = str(root / "lora_huge.safetensors")

    # key prefixes: two fake artifacts sharing their first 8 hex digits
    f["ambiguous_prefix"], f["unknown_prefix"] = "abcd1234", "fedc"
    return f


def _keys_cache(cache: Path, fx: dict) -> None:
    for tail in ("0" * 56, "1" * 56):
        key = fx["ambiguous_prefix"] + tail
        (cache / "objects" / key[:2] / key).mkdir(parents=True)


def _snapshot(cache: Path) -> list[str]:
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*")) if cache.exists() else []


def run_cli(argv: list[str]) -> int:
    """`ltx ARGV` in this process (warnings silenced): its exit code."""
    import stages.cli as cli

    saved = sys.argv
    sys.argv = ["ltx", *argv]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cli.main()
        rc = 0
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
    finally:
        sys.argv = saved
    return rc


def _run_in_process(argv: list[str], capsys) -> tuple[int, str]:
    rc = run_cli(argv)
    return rc, capsys.readouterr().err


def _check(case: Case, rc: int, err: str) -> None:
    lines = err.strip().splitlines()
    assert rc == 1, (case.id, rc, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), (case.id, err)
    assert case.needle in lines[0], (case.id, lines[0])


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, fx: dict, tmp_path: Path, capsys, monkeypatch):
    for var in ("LTX_DEBUG", "LTX_MODEL", "LTX_CACHE", "LTX_DTYPE", "LTX_CPU_GEMM"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-hub"))  # no cached Gemma to fall back on
    for var, value in case.env:
        monkeypatch.setenv(var, value)
    cache = tmp_path / "cache"
    if case.cache == "keys":
        _keys_cache(cache, fx)
    before = _snapshot(cache)
    args = case.args(fx) if callable(case.args) else case.args
    argv = args if args[0] == "--cache-dir" else ["--cache-dir", str(cache), *args]
    rc, err = _run_in_process(argv, capsys)
    _check(case, rc, err)
    assert _snapshot(cache) == before, f"{case.id} wrote to the cache: {_snapshot(cache)}"
    assert not Path(fx["out"]).exists() and not Path(fx["sweep"]).exists()
    if case.subprocess:
        r = subprocess.run(
            [sys.executable, "-m", "stages.cli", *argv],
            capture_output=True,
            text=True,
            timeout=300,
            env={k: v for k, v in os.environ.items() if k not in ("LTX_DEBUG", "LTX_MODEL", "LTX_CACHE")},
        )
        _check(case, r.returncode, r.stderr)
        assert _snapshot(cache) == before
    print(f"RELIABILITY bad_input {case.id} ok")


def test_bad_input_count():
    """The README's count of bad inputs tried comes from this table (tests/reliability_counts.py)."""
    assert len({c.id for c in CASES}) == len(CASES) >= 60
