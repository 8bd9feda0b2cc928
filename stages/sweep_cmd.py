"""`ltx sweep`: every combination of prompts, seeds and options given as lists, as one plan of merged
stages, run in this process or on a Ray cluster (`--executor ray`)."""

import copy
import importlib.util
import inspect
import typing
from pathlib import Path
from typing import Annotated, Any

import typer

from stages import commands, progress
from stages.framework import LtxError
from stages.session import State, echo

# Options a sweep takes as a comma-separated list (`--cfg-scale 2,3,4`): field -> a value's type
LISTS: dict[str, type] = {
    "height": int,
    "width": int,
    "num_frames": int,
    "frame_rate": float,
    "steps": int,
    "cfg_scale": float,
    "audio_cfg_scale": float,
    "stg_scale": float,
    "video_stg_scale": float,
    "audio_stg_scale": float,
    "video_rescale_scale": float,
    "audio_rescale_scale": float,
    "a2v_guidance_scale": float,
    "v2a_guidance_scale": float,
    "video_skip_step": int,
    "audio_skip_step": int,
    "image_crf": int,
    "pipeline": str,
    "tiling": str,
    "decoder": str,
    "model": str,
}
SINGLE: dict[str, type] = {"memory_budget": float}  # one value: a list is an error
TILING_PRESETS = ("none", "default", "aggressive", "conservative")
# generate's options that a sweep replaces: --prompt (repeatable here), --seeds, --output-path DIR
DROPPED = ("run", "prompt", "seed", "output_path", "output_audio", "force")
PATHS = ("checkpoint_path", "spatial_upsampler_path", "gemma_root", "model", "prompt_enhancer_gemma_root",
         "transformer_path", "text_encoder_path", "video_vae_path", "audio_vae_path", "duration_head_path",
         "audio_path")  # fmt: skip
PATH_STRENGTHS = ("video_conditioning", "conditioning_attention_mask")  # "PATH::STRENGTH"


def _sweep_only(
    prompt: Annotated[
        list[str] | None, typer.Option("--prompt", "-p", help="A prompt (repeatable: one axis of the sweep).")
    ] = None,
    prompts: Annotated[
        Path | None, typer.Option("--prompts", help="FILE: prompts, one a line (blank lines are skipped).")
    ] = None,
    seeds: Annotated[
        str | None,
        typer.Option("--seeds", "--seed", help="Seeds: a range 1-8, a list 1,2,5 or both (default 10)."),
    ] = None,
    output_path: Annotated[
        Path,
        typer.Option(
            help="DIR: one .mp4 per combination, named from its values, and sweep.csv (combination -> "
            "output, run, keys)."
        ),
    ] = Path("out/sweep"),
    executor: Annotated[
        str,
        typer.Option(help="local (one stage after another in this process) or ray (a Ray task per stage)."),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            help="--executor ray: the cluster to join (HOST:PORT, or auto: the one `ray start` started on "
            "this machine); default: a local cluster started for this sweep."
        ),
    ] = None,
    retries: Annotated[
        int,
        typer.Option(help="--executor ray: how often a failed task is tried again (lost worker, I/O error)."),
    ] = 2,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Print the plan (stage runs, each combination's output) and run nothing."
        ),
    ] = False,
) -> None:
    pass


def _listed(param: inspect.Parameter) -> inspect.Parameter:
    """A shared option, taken as text so that a sweep can read a list (or refuse one)."""
    _, info = typing.get_args(param.annotation)
    info = copy.copy(info)
    if param.name in LISTS:
        info.help = (info.help or "") + " A comma-separated list sweeps it."
    return param.replace(annotation=Annotated[str | None, info])


def _signature() -> inspect.Signature:
    params = []
    for p in inspect.signature(commands._options).parameters.values():
        if p.name in DROPPED:
            continue
        params.append(_listed(p) if p.name in LISTS or p.name in SINGLE else p)
    own = list(inspect.signature(_sweep_only).parameters.values())
    json_out = [p for p in params if p.name == "json_out"]
    return inspect.Signature(own + [p for p in params if p.name != "json_out"] + json_out)


def _option(name: str) -> str:
    """The option's name as the help shows it first (--video-cfg-guidance-scale for cfg_scale)."""
    _, info = typing.get_args(inspect.signature(commands._options).parameters[name].annotation)
    return info.param_decls[0] if info.param_decls else "--" + name.replace("_", "-")


def _abs(path: str) -> str:
    """A path the Ray workers find from their own working directory (a repo id or name stays as it is)."""
    p = Path(path).expanduser()
    return str(p.resolve()) if p.exists() else path


def _strengths(option: str, value: str) -> tuple[str, list[float], list[str]]:
    """`PATH::0.5,1.0` (from `--lora PATH 0.5,1.0`) -> (absolute PATH, strengths, as written)."""
    from stages.sweep import parse_list

    path, _, text = value.partition("::")
    if not text:
        return _abs(path), [1.0], ["1.0"]
    values, tokens = parse_list(f"{option} {path} strength", text, float)
    return _abs(path), values, tokens


def _tiling_values(text: str) -> list[str]:
    parts = [t.strip() for t in text.split(";")] if ";" in text else [t.strip() for t in text.split(",")]
    if ";" in text or all(p in TILING_PRESETS for p in parts):
        return parts
    return [text]  # explicit sizes TILE:OVERLAP,FRAMES:OVERLAP (several: separate them with ';')


def _dims(kw: dict[str, Any]) -> tuple[dict[str, Any], list]:
    """The raw options of every combination's base (single values) and the sweep's dimensions."""
    from stages.sweep import Dim, parse_list, parse_seeds, read_prompts

    prompts = read_prompts(kw.pop("prompt") or [], kw.pop("prompts"))
    text = kw.pop("seeds")
    seeds = parse_seeds(text) if text is not None else [None]
    dims = [
        Dim("prompt", "prompt", tuple(prompts), tuple(prompts)),
        Dim("seed", "seed", tuple(seeds), tuple(str(s) for s in seeds)),
    ]
    raw = dict(kw)
    for name, kind in SINGLE.items():
        value = raw.get(name)
        if value is not None:
            if "," in value:
                raise LtxError(f"{_option(name)} {value}: takes one value, not a list; give one (e.g. 24)")
            raw[name] = commands._num(kind, value, _option(name))
    for name, kind in LISTS.items():
        value = raw.get(name)
        if value is None:
            continue
        if name == "tiling":
            values = tokens = _tiling_values(value)
            from stages.sweep import _unique

            _unique("--tiling", value, values)
        else:
            values, tokens = parse_list(_option(name), value, kind)
        if name in PATHS:
            values = [_abs(v) for v in values]
        raw[name] = values[0]
        if len(values) > 1:
            dims.append(Dim(name.replace("_", "-"), name, tuple(values), tuple(tokens)))
    loras = []
    for i, value in enumerate(raw.get("lora") or []):
        path, values, tokens = _strengths("--lora", value)
        loras.append(f"{path}::{values[0]}")
        if len(values) > 1:
            dims.append(Dim(f"lora{i + 1}", "loras", tuple(values), tuple(tokens), index=i))
    raw["lora"] = loras or None
    if raw.get("distilled_lora"):
        path, values, tokens = _strengths("--distilled-lora", raw["distilled_lora"])
        raw["distilled_lora"] = f"{path}::{values[0]}"
        if len(values) > 1:
            dims.append(Dim("distilled-lora", "distilled_lora", tuple(values), tuple(tokens)))
    images = []
    for value in raw.get("image") or []:
        path, frame, strength = value.split("::")
        if "," in frame + strength:
            raise LtxError(f"--image {path} {frame} {strength}: takes one FRAME and STRENGTH, not a list")
        images.append(f"{_abs(path)}::{frame}::{strength}")
    raw["image"] = images or None
    for name in PATHS:
        if raw.get(name) and name != "model":
            raw[name] = _abs(raw[name])
    for name in PATH_STRENGTHS:  # every machine of a Ray sweep reads the same files
        value = raw.get(name)
        if value:
            absolute = [_abs_first(v) for v in ([value] if isinstance(value, str) else value)]
            raw[name] = absolute[0] if isinstance(value, str) else absolute
    return raw, dims


def _abs_first(value: str) -> str:
    """`PATH::STRENGTH` (the CLI's form of `PATH STRENGTH`) with PATH made absolute."""
    path, sep, rest = value.partition("::")
    return f"{_abs(path)}{sep}{rest}"


def _check(executor: str, address: str | None, retries: int, out_dir: Path) -> None:
    from stages.mux import AUDIO_CONTAINERS, VIDEO_CONTAINERS

    if executor not in ("local", "ray"):
        raise LtxError(f"--executor {executor!r} is unknown; use local or ray")
    if address is not None and executor != "ray":
        raise LtxError(f"--address {address} applies to --executor ray; add --executor ray or drop it")
    if retries < 0:
        raise LtxError(f"--retries {retries} must be >= 0")
    if executor == "ray" and importlib.util.find_spec("ray") is None:
        raise LtxError("--executor ray needs Ray: pip install 'ltx-mlx[distributed]' (or pip install ray)")
    if out_dir.suffix.lower() in VIDEO_CONTAINERS + AUDIO_CONTAINERS or out_dir.is_file():
        raise LtxError(f"--output-path {out_dir} must be a folder for ltx sweep (one file per combination)")


def sweep(**kw: Any) -> dict[str, Any]:
    """Run every combination of --prompt/--prompts, --seeds and the options given as lists
    (--cfg-scale 2,3,4, --lora FILE 0.5,1.0, ...): each stage with the same key runs once, in this
    process or on Ray (--executor ray); one .mp4 per combination in --output-path DIR and sweep.csv."""
    from ltx import settings
    from stages import executors
    from stages import sweep as sw

    executor, address, retries = kw.pop("executor"), kw.pop("address"), kw.pop("retries")
    dry_run = kw.pop("dry_run")
    out_dir = Path(kw.pop("output_path"))
    _check(executor, address, retries, out_dir)
    raw, dims = _dims(kw)
    base = commands._options_from(raw, {})
    settings.check()
    store = State.store()
    plan = sw.plan(store, base, dims, out_dir)  # every graph: bad input fails here, before anything runs
    todo, cached = executors.pending(store, plan.jobs, plan.wanted)
    s = plan.summary() | {"cached": len(cached), "to_run": len(todo)}
    progress.line(
        f"sweep: {s['combinations']} combinations, {s['stage_runs']} stage runs in their graphs; merging equal "
        f"keys leaves {s['distinct']} (saves {s['saved']}); {s['cached']} cached, {s['to_run']} to run",
        event="sweep",
        **s,
    )
    if dry_run:
        for c in plan.combos:
            progress.line(
                f"{c.output}  {c.nodes['mux'].key[:8]}",
                event="combination",
                output=str(c.output),
                values={**c.values, "seed": c.resolved.seed},
                keys={k: n.key for k, n in c.nodes.items()},
            )
        return {"plan": plan}
    for c in plan.combos:
        commands._record(store, c.run, c.nodes, c.resolved, c.output)
    commands._scratch_in_cache(store)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = out_dir / sw.TABLE
    from stages.mux import write_output

    write_output(sw.table(plan).encode(), table)
    if executor == "ray":
        root = State.cache_dir if isinstance(State.cache_dir, str) else str(Path(State.cache_dir).resolve())
        report = executors.run_ray(root, todo, cached, address=address, retries=retries)
    else:
        report = executors.run_local(store, todo, cached)
    written = sw.write_outputs(store, plan)
    report.raise_failures()
    echo(f"wrote {len(written)} files and {table} in {out_dir} (ran {len(report.ran)} stages)")
    keys = {c.output.stem: c.nodes["mux"].key for c in plan.combos}
    progress.output(keys, None, [*written, table], show_keys=False)
    return {"plan": plan, "report": report, "paths": written, "table": table}


sweep.__signature__ = _signature()


def register(app: typer.Typer) -> None:
    app.command("sweep")(commands._in_session(sweep))
