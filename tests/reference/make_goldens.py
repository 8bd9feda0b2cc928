"""Regenerate the parity goldens from the official PyTorch reference.

Two golden sets, each from its own reference version and virtual environment (`just goldens` runs both):
    LTX-2.0 and LTX-2.3: ltx-core/ltx-pipelines 1.0.0 in .venv-ref (transformers<5), modules golden_*.py;
    LTX-2.5: ltx-core/ltx-pipelines 1.2.0 in .venv-ref12 (transformers 5.14), modules golden25_*.py.
The variants default to the ones the running venv's ltx-core makes; none of these packages is in
this project's own environment.

Every `golden_*.py` (`golden25_*.py`) module beside this file contributes one component:
    contribute(variant) -> {file: {"metadata": {...}, "tensors": {key: shape}, "dtype": "BF16"}, "static": {...}}
        the tiny config sections it owns (deep-merged into the file's metadata) and the official
        key names and shapes of its weights, read off the reference's own modules;
    run(variant, model_dir) -> {name: np.ndarray}    (optional: a module may only contribute files)
        loads its component from the tiny model directory through the official loading path,
        runs it on fixed inputs (noise injected, never drawn from torch's RNG) and returns inputs
        and outputs, saved to tests/goldens/<variant>/<component>.safetensors.
    SHARED = "<file>.safetensors" (optional): a variant-independent golden, run once as
        run(None, None) and saved to tests/goldens/<file> (golden_rope.py: the RoPE ladders).

The merged manifest is written to ltx/assets/tiny/<variant>/manifest.json; ltx.weights.tiny synthesises
the weights from it, so the tiny model used by `ltx generate --model tiny` is the one the goldens
were computed with.

Usage: python tests/reference/make_goldens.py [--only NAME ...] [--variant 2.0|2.3|2.5 ...]
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from ltx.weights import tiny  # noqa: E402  (numpy-only module)

GOLDENS = ROOT / "tests" / "goldens"


def _merge(a: dict, b: dict, where: str = "") -> dict:
    out = dict(a)
    for k, v in b.items():
        if k in out and isinstance(out[k], dict) and isinstance(v, dict):
            out[k] = _merge(out[k], v, f"{where}{k}.")
        elif k in out and out[k] != v:
            raise ValueError(f"golden modules disagree on {where}{k}: {out[k]!r} vs {v!r}")
        else:
            out[k] = v
    return out


def module_prefix(variant: str) -> str:
    return "golden25_" if variant in tiny.VARIANTS_12 else "golden_"


def modules(variant: str) -> dict[str, object]:
    prefix = module_prefix(variant)
    names = sorted(p.stem for p in HERE.glob(f"{prefix}*.py"))
    return {n.removeprefix(prefix): importlib.import_module(n) for n in names}


def default_variants() -> list[str]:
    from importlib.metadata import version

    return list(tiny.VARIANTS_12 if version("ltx-core").startswith("1.2") else tiny.VARIANTS)


def build_manifest(variant: str, mods: dict[str, object]) -> dict:
    manifest: dict = {"variant": variant, "files": {}, "static": {}}
    for mod in mods.values():
        part = mod.contribute(variant)
        manifest["static"] = _merge(manifest["static"], part.pop("static", {}))
        manifest["files"] = _merge(manifest["files"], part)
    return manifest


def save_goldens(path: Path, arrays: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    clean = {}
    for k, v in arrays.items():
        v = np.asarray(v)
        clean[k] = np.ascontiguousarray(v.astype(np.float32) if v.dtype.kind == "f" else v)
    save_file(clean, str(path))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*", default=None, help="component names (default: all)")
    ap.add_argument("--variant", nargs="*", default=None, help="default: those of this venv's ltx-core")
    args = ap.parse_args()
    variants = args.variant or default_variants()
    for variant in variants:
        mods = modules(variant)
        manifest = build_manifest(variant, mods)
        out = tiny.ASSETS / variant / "manifest.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        with tempfile.TemporaryDirectory() as tmp:
            model_dir = tiny.materialize(manifest, Path(tmp) / "model")
            for name, mod in mods.items():
                skip = hasattr(mod, "SHARED") or not hasattr(mod, "run")
                if skip or (args.only and name not in args.only):
                    continue
                arrays = mod.run(variant, model_dir)
                save_goldens(GOLDENS / variant / f"{name}.safetensors", arrays)
                size = sum(np.asarray(a).nbytes for a in arrays.values())
                print(f"{variant} {name}: {len(arrays)} arrays, {size / 1e6:.2f} MB")
    if not set(variants) & set(tiny.VARIANTS):
        return
    for name, mod in modules(tiny.VARIANTS[0]).items():  # variant-independent goldens, once
        if hasattr(mod, "SHARED") and not (args.only and name not in args.only):
            arrays = mod.run(None, None)
            save_goldens(GOLDENS / mod.SHARED, arrays)
            size = sum(np.asarray(a).nbytes for a in arrays.values())
            print(f"{name}: {len(arrays)} arrays, {size / 1e3:.1f} kB")


if __name__ == "__main__":
    main()
