"""The pipeline from Python: the same graphs, cache and checks as the `ltx` commands.

    from stages import api

    result = api.generate(prompt="A red fox trots through fresh snow", output_path="out/fox.mp4", seed=11)
    result.paths    # [PosixPath('out/fox.mp4'), PosixPath('out/fox.png')]
    result.keys     # {"encode": "d488c4d5...", ..., "mux": "..."}
    api.decode(result.run, tiling="aggressive")   # the key of a re-decode of the saved latents

Options are those of `ltx generate`, by their Python names (`height`, `num_frames`, `cfg_scale`,
`pipeline`, `model`, `tiling`, ...); `images` takes (path, frame, strength) tuples, `loras` and
`video_conditioning` (path, strength) ones, `conditioning_attention_mask` one (path, strength). Bad input raises `stages.framework.LtxError` before anything is written.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cache.store import is_url
from stages import commands, progress
from stages.framework import LtxError, ensure
from stages.session import State, echo


@dataclass(frozen=True)
class Result:
    run: str  # the run name (`ltx status RUN`)
    paths: list[Path]  # the files written
    keys: dict[str, str]  # stage -> artifact key


def _raw(options: dict[str, Any], cache_dir: str | Path | None) -> dict[str, Any]:
    """The commands' keyword arguments for these options: their defaults, then the given ones."""
    if cache_dir is not None:
        State.cache_dir = cache_dir if is_url(cache_dir) else Path(cache_dir)
    raw = {
        name: p.default
        for name, p in inspect.signature(commands.generate).parameters.items()
        if name not in ("json_out",)
    }
    images = options.pop("images", None)
    loras = options.pop("loras", None)
    distilled_lora = options.pop("distilled_lora", None)
    references = options.pop("video_conditioning", None)
    mask = options.pop("conditioning_attention_mask", None)
    unknown = sorted(set(options) - set(raw))
    if unknown:
        raise TypeError(
            f"unknown option {unknown[0]!r}; the options are those of `ltx generate`: {', '.join(raw)}"
        )
    raw.update(options)
    raw["image"] = ["::".join(map(str, i)) for i in images] if images else None
    raw["lora"] = ["::".join(map(str, x)) for x in loras] if loras else None
    raw["distilled_lora"] = "::".join(map(str, distilled_lora)) if distilled_lora else None
    raw["video_conditioning"] = ["::".join(map(str, v)) for v in references] if references else None
    raw["conditioning_attention_mask"] = "::".join(map(str, mask)) if mask else None
    for name in ("video_stg_blocks", "audio_stg_blocks"):
        if raw.get(name) is not None and not isinstance(raw[name], str):
            raw[name] = "::".join(map(str, raw[name])) or "none"
    for name in ("output_path", "output_audio"):
        if raw.get(name) is not None:
            raw[name] = Path(raw[name])
    return raw


def generate(*, cache_dir: str | Path | None = None, **options: Any) -> Result:
    """`ltx generate` with these options: every stage not cached runs; returns what was written."""
    with progress.session(json=False):
        out = commands.generate(**_raw(options, cache_dir))
    return Result(out["run"], [Path(p) for p in out["paths"]], out["keys"])


def decode(
    run: str, *, tiling: str | None = None, cache_dir: str | Path | None = None, **options: Any
) -> str:
    """`ltx decode RUN --tiling ...`: the key of the run's latents decoded with these settings (the run
    records them, as the command does)."""
    raw = _raw({"run": run, "tiling": tiling, **options}, cache_dir)
    with progress.session(json=False):
        run_name, audio = raw.pop("run"), raw.pop("output_audio")
        raw.pop("output_path")
        store, name, nodes, opts, _ = commands._plan(run_name, None, audio, **raw)
        if "decode" not in nodes:
            raise LtxError(f"run {run!r} has no decode stage")
        commands._record(store, name, nodes, opts, None)
        return ensure(store, nodes["decode"], echo=echo).key
