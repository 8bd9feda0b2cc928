"""Where model files come from: `--model tiny`, a folder, or a Hugging Face repo id in the local cache.

A model folder holds one or more single-file checkpoints (transformer, text projection and connectors,
video VAE, audio VAE, vocoder; the JSON config in the safetensors metadata), latent upsamplers, LoRAs,
and perhaps a Gemma-3 directory: the official repos (Lightricks/LTX-2, Lightricks/LTX-2.3) ship
`ltx-2-19b-dev.safetensors`, `ltx-2-19b-distilled.safetensors`, fp8 variants, the distilled LoRA and
spatial and temporal upscalers side by side. `resolve_model` picks the files a pipeline needs:

- the checkpoint by name: `distilled` takes a `*distilled*` one, the dev pipelines a `*dev*` one,
  bf16 before fp8 before fp4 (a folder with a single checkpoint uses it for every pipeline);
- the spatial x2 upsampler by the config in each upsampler's metadata (spatial x2, spatial x1.5,
  temporal x2; a field the config lacks takes the loader's default, ltx.video.upsampler.UpsamplerConfig);
- the distilled LoRA (`*distilled-lora*`) that dev-two-stage fuses into stage 2;
- Gemma: `--gemma-root PATH|REPO`, else a Gemma-3 directory inside the folder, else
  google/gemma-3-12b-it-qat-q4_0-unquantized from the Hugging Face cache.

`--checkpoint-path`, `--spatial-upsampler-path`, `--gemma-root` override each choice. Repo ids resolve
offline from the Hugging Face cache (HF_HUB_CACHE, HF_HOME; nothing is downloaded or written there).
Each component's identity in cache keys is the content digest of the file it comes from, so swapping
weights changes exactly the keys of the stages that use them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from cache.store import Store
from stages.framework import LtxError

TINY_NAMES = {"tiny": "2.0", "tiny-2.0": "2.0", "tiny-2.3": "2.3", "tiny-2.5": "2.5"}
TINY_LORA = "tiny:distilled_lora"  # the tiny model's own distilled LoRA, created with it
TINY_IC_LORA = "tiny:ic_lora"  # the tiny model's own IC-LoRA (reference_downscale_factor 2)
TINY_LORAS = {TINY_LORA: "distilled_lora.safetensors", TINY_IC_LORA: "ic_lora.safetensors"}
# --spatial-upsampler-path for the tiny models: their own upsamplers, created with them
TINY_UPSAMPLERS = {"tiny:x2": "upsampler.safetensors", "tiny:x1.5": "upsampler_x1.5.safetensors"}
DEV_CHECKPOINT = ("dev", "dev-two-stage", "keyframes", "hq", "a2v")  # the pipelines of a *dev* checkpoint
GEMMA_REPOS = ("google/gemma-3-12b-it-qat-q4_0-unquantized", "google/gemma-3-12b-it")
SPATIAL_X2 = "spatial x2"
QUANT_RANK = {None: 0, "fp8": 1, "fp4": 2}  # bf16 before fp8 before fp4
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


# ---- safetensors metadata ---------------------------------------------------------------------------
def _metadata(path: Path) -> dict[str, str]:
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > 100 << 20 or n + 8 > path.stat().st_size:
                return {}
            return json.loads(f.read(n)).get("__metadata__") or {}
    except (OSError, ValueError, struct.error, AttributeError):
        return {}


def _config(path: Path) -> dict:
    try:
        config = json.loads(_metadata(path).get("config", "{}"))
    except (json.JSONDecodeError, TypeError):
        return {}
    return config if isinstance(config, dict) else {}


def _keys(path: Path) -> set[str]:
    """The tensor names of a safetensors file (its header only)."""
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > 100 << 20 or n + 8 > path.stat().st_size:
                return set()
            return {k for k in json.loads(f.read(n)) if k != "__metadata__"}
    except (OSError, ValueError, struct.error, AttributeError):
        return set()


def _holds(path: Path, prefix: str) -> bool:
    return any(k.startswith(prefix) for k in _keys(path))


def vae_kind(path: Path) -> str | None:
    """What a vae/ file of a split model holds: "diffusion" or "conv" (video VAE), "audio", or None."""
    config = _config(path)
    if "vae" in config:
        return (
            "conv"
            if config["vae"].get("_class_name", "CausalVideoAutoencoder") == "CausalVideoAutoencoder"
            else "diffusion"
        )
    return "audio" if "audio_vae" in config else None


def upsampler_kind(path: Path) -> str:
    """ "spatial x2", "spatial x1.5" or "temporal x2", from the config in the file's metadata.

    Missing fields take ltx.video.upsampler.UpsamplerConfig's defaults (spatial, x2: without
    `rational_resampler` the upsampler is the x2 pixel shuffle); a file with no config at all is
    named by its file name (its load fails later, naming the missing config)."""
    config = _config(path)
    if not config:
        name = path.name.lower()
        if "temporal" in name:
            return "temporal x2"
        m = re.search(r"x(\d+(?:\.\d+)?)", name)
        return f"spatial x{float(m.group(1)):g}" if m else SPATIAL_X2
    return _kind(config)


def _kind(config: dict) -> str:
    if config.get("temporal_upsample", False) or not config.get("spatial_upsample", True):
        return "temporal x2"
    scale = float(config.get("spatial_scale", 2.0)) if config.get("rational_resampler", False) else 2.0
    return f"spatial x{scale:g}"


def _quant(name: str) -> str | None:
    low = name.lower()
    return "fp4" if "fp4" in low else "fp8" if "fp8" in low else None


def _variant(name: str) -> str | None:
    low = name.lower()
    if "distilled" in low:
        return "distilled"
    return "dev" if re.search(r"(?<![a-z])dev(?![a-z])", low) else None


# ---- what a folder holds ----------------------------------------------------------------------------
@dataclass
class Checkpoint:
    path: Path
    version: str
    variant: str | None  # "distilled", "dev" or None (from the file name)
    quant: str | None  # "fp8", "fp4" or None (bf16/float), from the file name


@dataclass
class Inventory:
    """The LTX-2 files of one folder (a Hugging Face snapshot is a folder too)."""

    root: Path
    label: str  # what the user named: the folder, or the repo id
    repo: str | None = None  # the Hugging Face repo id, when it came from the cache
    checkpoints: list[Checkpoint] = field(default_factory=list)
    upsamplers: list[tuple[Path, str]] = field(default_factory=list)  # (file, kind)
    loras: list[Path] = field(default_factory=list)
    gemmas: list[Path] = field(default_factory=list)
    other: list[Path] = field(default_factory=list)  # safetensors files that are none of the above
    # the split layout of LTX-2.5 (diffusion_models/, text_encoders/, vae/, latent_upscale_models/, loras/,
    # model_patches/): the component files found in vae/ and model_patches/
    vaes: dict[str, list[Path]] = field(default_factory=dict)  # "diffusion" / "conv" / "audio" -> files
    duration_heads: list[Path] = field(default_factory=list)

    @property
    def distilled_loras(self) -> list[Path]:
        return [p for p in self.loras if re.search(r"distilled[-_]lora", p.name.lower())]

    def hint(self, pattern: str) -> str:
        """How to get a missing file of a Hugging Face repo."""
        if self.repo is None:
            return ""
        return f" (download it with `huggingface-cli download {self.repo} --include '{pattern}'`)"


SPLIT_DIRS = ("diffusion_models", "latent_upscale_models", "loras", "vae", "model_patches")


def scan(root: Path, label: str | None = None, repo: str | None = None) -> Inventory:
    """Classify the .safetensors files of `root` (by name for LoRAs and upsamplers, by config otherwise),
    and of the split layout's subfolders; Gemma folders in `root` and in text_encoders/."""
    inv = Inventory(root, label or str(root), repo)
    files = sorted(root.glob("*.safetensors")) + [
        p for d in SPLIT_DIRS if (root / d).is_dir() for p in sorted((root / d).glob("*.safetensors"))
    ]
    for p in files:
        if p.parent.name == "vae" and p.parent != root and p.is_file() and vae_kind(p):
            inv.vaes.setdefault(vae_kind(p), []).append(p)
            continue
        if p.parent.name == "model_patches" and p.parent != root and _holds(p, "duration_head."):
            inv.duration_heads.append(p)
            continue
        if not p.is_file():
            continue
        low = p.name.lower()
        if "lora" in low:
            inv.loras.append(p)
        elif "upscaler" in low or "upsampler" in low:
            inv.upsamplers.append((p, upsampler_kind(p)))
        elif "transformer" in _config(p):
            version = _metadata(p).get("model_version", "2.0")
            inv.checkpoints.append(Checkpoint(p, version, _variant(p.name), _quant(p.name)))
        else:
            inv.other.append(p)
    folders = sorted(root.iterdir()) + (
        sorted((root / "text_encoders").iterdir()) if (root / "text_encoders").is_dir() else []
    )
    inv.gemmas = [  # Gemma folders, and LTX-2.5's packed text-encoder files (text_encoders/*.safetensors)
        d
        for d in folders
        if (d.is_dir() and any(d.glob("tokenizer*")) and any(d.rglob("model*.safetensors")))
        or (
            d.parent.name == "text_encoders" and d.suffix == ".safetensors" and "gemma_config" in _metadata(d)
        )
    ]
    return inv


def choose_checkpoint(inv: Inventory, pipeline: str) -> Path:
    names = ", ".join(c.path.name for c in inv.checkpoints)
    if not inv.checkpoints:
        raise LtxError(
            f"no LTX-2 checkpoint in {inv.label}: expected a .safetensors file whose metadata 'config' has a "
            "'transformer' section (e.g. ltx-2-19b-distilled.safetensors)"
            + inv.hint("*distilled.safetensors")
        )
    if len(inv.checkpoints) == 1:
        return inv.checkpoints[0].path
    want = "dev" if pipeline in DEV_CHECKPOINT else "distilled"
    match = [c for c in inv.checkpoints if c.variant == want]
    if not match:
        raise LtxError(
            f"{inv.label} holds several checkpoints ({names}) and none named *{want}* for --pipeline {pipeline}; "
            f"pass --checkpoint-path FILE{inv.hint(f'*{want}.safetensors')}"
        )
    best = min(QUANT_RANK[c.quant] for c in match)
    match = [c for c in match if QUANT_RANK[c.quant] == best]
    if len(match) > 1:
        raise LtxError(
            f"{inv.label} holds several {want} checkpoints ({', '.join(c.path.name for c in match)}); "
            "pass --checkpoint-path FILE"
        )
    return match[0].path


def choose_upsampler(inv: Inventory) -> Path:
    x2 = [p for p, kind in inv.upsamplers if kind == SPATIAL_X2]
    if not x2:
        found = ", ".join(f"{p.name} ({kind})" for p, kind in inv.upsamplers) or "none"
        raise LtxError(
            f"expected one spatial upsampler file (x2, e.g. ltx-2-spatial-upscaler-x2-1.0.safetensors) in "
            f"{inv.label}, found {found}; pass --spatial-upsampler-path FILE"
            + inv.hint("*spatial-upscaler-x2*")
        )
    return x2[-1]  # of several versions, the last by name (the newest: -1.0 < -1.1)


def choose_gemma(inv: Inventory | None, gemma: str | None) -> Path:
    if gemma is not None:
        return _gemma_root(gemma)
    if inv is not None and len(inv.gemmas) > 1:
        raise LtxError(
            f"expected one Gemma-3 directory (tokenizer and model*.safetensors) in {inv.label}, found "
            f"{len(inv.gemmas)}; pass --gemma-root PATH"
        )
    if inv is not None and inv.gemmas:
        return inv.gemmas[0]
    for repo in GEMMA_REPOS:
        snapshot = hf_snapshot(repo)
        if snapshot is not None:
            return snapshot
    where = f" in {inv.label}" if inv is not None else ""
    raise LtxError(
        f"expected one Gemma-3 directory (tokenizer and model*.safetensors){where}, found 0; pass --gemma-root "
        f"PATH or a Hugging Face repo (download it with `huggingface-cli download {GEMMA_REPOS[0]}`)"
    )


def _gemma_root(gemma: str, option: str = "--gemma-root") -> Path:
    p = Path(gemma).expanduser()
    if p.is_dir() or (option == "--gemma-root" and p.is_file() and p.suffix == ".safetensors"):
        return p  # a folder, or LTX-2.5's packed text-encoder file
    if is_repo_id(gemma):
        snapshot = hf_snapshot(gemma)
        if snapshot is None:
            raise LtxError(_not_cached(option, gemma))
        return snapshot
    raise LtxError(f"{option} {gemma} is not a directory; pass a Gemma directory or a Hugging Face repo id")


def enhancer_root(value: str) -> Path:
    """--prompt-enhancer-gemma-root PATH|REPO: a directory, or a repo's snapshot in the Hugging Face cache."""
    return _gemma_root(value, "--prompt-enhancer-gemma-root")


# ---- the Hugging Face cache (offline only) ------------------------------------------------------------
def is_repo_id(text: str) -> bool:
    return bool(_REPO_ID.fullmatch(text)) and ".." not in text


def hf_cache_dir() -> Path:
    """The hub cache as huggingface_hub finds it, read from the environment now (not at import time):
    HF_HUB_CACHE, else HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub."""
    env = os.environ
    hub = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE")
    if not hub:
        home = env.get("HF_HOME") or os.path.join(
            env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface"
        )
        hub = os.path.join(home, "hub")
    return Path(os.path.expandvars(os.path.expanduser(hub)))


def hf_snapshot(repo: str) -> Path | None:
    """The cached snapshot of `repo` at `main` (a partial download counts: we pick among its files), or None."""
    cache = hf_cache_dir()
    if not cache.is_dir():
        return None
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo, cache_dir=cache, local_files_only=True))
    except Exception as e:  # noqa: BLE001  (not cached, invalid id, incomplete snapshot)
        partial = getattr(e, "snapshot_path", None)  # huggingface_hub >= 1.x: IncompleteSnapshotError
        return Path(partial) if partial and Path(partial).is_dir() else None


def hf_repos() -> list[tuple[str, Path]]:
    """(repo id, snapshot) of every LTX model repo in the Hugging Face cache."""
    cache = hf_cache_dir()
    if not cache.is_dir():
        return []
    from huggingface_hub import scan_cache_dir

    try:
        info = scan_cache_dir(cache)
    except Exception:  # noqa: BLE001  (an unreadable cache lists nothing)
        return []
    out = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model" or "ltx" not in repo.repo_id.lower():
            continue
        snapshot = hf_snapshot(repo.repo_id)
        if snapshot is None and repo.revisions:  # no refs/main: the newest revision
            snapshot = max(repo.revisions, key=lambda r: r.last_modified).snapshot_path
        if snapshot is not None:
            out.append((repo.repo_id, Path(snapshot)))
    return out


def _not_cached(option: str, repo: str) -> str:
    return (
        f"{option} {repo} is not a directory, and the Hugging Face cache ({hf_cache_dir()}) has no {repo}; "
        f"download it with `huggingface-cli download {repo}` (or `hf download {repo}`)"
    )


def locate(model: str, option: str = "--model") -> Inventory:
    """The folder `model` names (a directory, or a repo id in the Hugging Face cache), scanned."""
    root = Path(model).expanduser()
    if root.is_dir():
        return scan(root, str(root))
    if is_repo_id(model):
        snapshot = hf_snapshot(model)
        if snapshot is None:
            raise LtxError(_not_cached(option, model))
        return scan(snapshot, model, repo=model)
    raise LtxError(
        f"{option} {model!r} is neither 'tiny' nor a directory nor a Hugging Face repo id; pass a directory "
        "with the official LTX-2 files, or a repo such as Lightricks/LTX-2"
    )


# ---- the files of one run ---------------------------------------------------------------------------
@dataclass
class ModelFiles:
    """The files of one model and their content digests (memoised in the store)."""

    name: str
    checkpoint: Path
    upsampler: Path
    gemma: Path
    store: Store
    tiny_variant: str | None = None
    recorded: dict[str, str] | None = None  # digests recorded by `ltx convert` (the source's identity)
    distilled_lora: Path | None = None  # the model folder's distilled LoRA (dev-two-stage's default)
    root: Path | None = None  # the model folder
    label: str | None = None  # how the user named it (a repo id, a folder), for `choice`
    # Split checkpoints (LTX-2.5 ships one file per component): each None means "in `checkpoint`", the
    # transformer file (which also holds the text projection and connectors, and names the version).
    video_vae: Path | None = None  # the video VAE encoder (+ its default decoder)
    audio_vae: Path | None = None  # the audio VAE and the vocoder
    duration_head: Path | None = None  # LTX-2.5's duration head; None: the model has none
    conv_vae: Path | None = None  # the file with the conv video decoder (None: the video VAE file)
    diffusion_vae: Path | None = None  # the file with the diffusion video decoder (LTX-2.5; None: none)
    enhancer: Path | None = None  # --prompt-enhancer-gemma-root: a separate Gemma 3 for --enhance-prompt

    def component(self, kind: str) -> Path:
        """The file a component comes from: transformer, text (projection + connectors), video_vae, audio_vae,
        duration_head."""
        if kind in ("transformer", "text"):
            return self.checkpoint
        path = {
            "video_vae": self.video_vae,
            "audio_vae": self.audio_vae,
            "duration_head": self.duration_head,
        }[kind]
        if kind == "duration_head" and path is None:
            raise LtxError(
                f"{self.label or self.name} has no duration head (LTX-2.5's model_patches/*duration-head*); pass "
                "--num-frames, or --duration-head-path FILE"
            )
        return path or self.checkpoint

    def externals(self, *kinds: str) -> dict[str, str]:
        """The content digests that key the stages reading `kinds`: the checkpoint's for what is in it (so a
        single-file model keeps its keys), else one per split component file."""
        out = {}
        for kind in kinds:
            path = self.component(kind)
            if path == self.checkpoint:
                out["checkpoint"] = (
                    self.transformer_digest if kind == "transformer" else self.checkpoint_digest
                )
            else:
                out[kind] = self._component_digest(kind, path)
        return out

    def _component_digest(self, kind: str, path: Path) -> str:
        if self.recorded and kind in self.recorded:
            return self.recorded[kind]
        return self._digest(path)

    def part_digests(self) -> dict[str, str]:
        """The content digests of a split model's component files besides the transformer (by field name,
        as `ltx convert` records them: a converted model keeps every cache key)."""
        out = {}
        for kind in ("video_vae", "audio_vae", "duration_head"):
            path = getattr(self, kind)
            if path is not None and path != self.checkpoint:
                out[kind] = self._component_digest(kind, path)
        for kind in ("conv", "diffusion"):
            path = getattr(self, f"{kind}_vae")
            if path is not None and path != self.checkpoint:
                out[f"{kind}_vae"] = self.decoder_digest(kind)
        return out

    @property
    def is_split(self) -> bool:
        return any(p is not None for p in (self.video_vae, self.audio_vae))

    @property
    def decoders(self) -> tuple[str, ...]:
        """The video decoders this model has, its default first (the diffusion one where there is one)."""
        return ("diffusion", "conv") if self.diffusion_vae is not None else ("conv",)

    def decoder_file(self, kind: str) -> Path:
        if kind == "diffusion":
            if self.diffusion_vae is None:
                raise LtxError(
                    f"--decoder diffusion: {self.label or self.name} has no diffusion video decoder (LTX-2.5 "
                    "models do); use --decoder conv"
                )
            return self.diffusion_vae
        return self.conv_vae or self.checkpoint

    def decoder_digest(self, kind: str) -> str:
        """The identity of the weights the decode stage reads (the only stage the diffusion decoder feeds)."""
        path = self.decoder_file(kind)
        if path == self.checkpoint:
            return self.checkpoint_digest
        return (
            self.recorded[f"{kind}_vae"]
            if self.recorded and f"{kind}_vae" in self.recorded
            else self._digest(path)
        )

    @cached_property
    def version(self) -> str:
        if self.tiny_variant is not None:
            return self.tiny_variant
        return _metadata(self.checkpoint).get("model_version", "2.0")

    def choice(self, distilled_lora: str | None = None) -> str:
        """One line saying which files were chosen: `model: Lightricks/LTX-2 -> ltx-2-19b-distilled...`."""

        def short(p: Path | str) -> str:
            p = Path(p)
            return p.name if self.root is not None and p.parent == self.root else str(p)

        line = (
            f"model: {self.label or self.name} -> {short(self.checkpoint)}, upsampler {short(self.upsampler)}"
        )
        if distilled_lora:
            line += f", distilled LoRA {short(distilled_lora)}"
        return line + f", gemma {self.gemma}"

    def ready(self) -> ModelFiles:
        """Create the tiny model's files on first use (a real model's files just exist)."""
        root = (
            self.root if self.tiny_variant is not None and self.root is not None else self.checkpoint.parent
        )
        if self.tiny_variant is not None and not root.is_dir():
            from ltx.weights import tiny

            root.parent.mkdir(parents=True, exist_ok=True)
            try:
                tiny.create(self.tiny_variant, root)
            except OSError:
                if not root.is_dir():  # a concurrent creator won the rename: use theirs
                    raise
        return self

    def _digest(self, path: Path) -> str:
        if self.tiny_variant is not None:
            from ltx.weights import tiny

            rel = path.relative_to(self.root if self.root is not None else self.checkpoint.parent)
            return f"tiny-{self.tiny_variant}-{tiny.manifest_digest(self.tiny_variant)}:{rel}"
        return self.store.digest(path)

    @cached_property
    def checkpoint_digest(self) -> str:
        return self.recorded["checkpoint"] if self.recorded else self._digest(self.checkpoint)

    @cached_property
    def transformer_digest(self) -> str:
        """The transformer's identity: differs from the checkpoint's only for a quantized conversion."""
        return (
            self.recorded.get("transformer", self.checkpoint_digest)
            if self.recorded
            else self.checkpoint_digest
        )

    @cached_property
    def upsampler_scale(self) -> float:
        """The spatial upsampler's scale (2.0 or 1.5, ...) from its config; stage 1 is sized from it."""
        if self.tiny_variant is not None:
            from ltx.weights import tiny

            spec = tiny.load_manifest(self.tiny_variant)["files"][
                self.upsampler.relative_to(self.root).as_posix()
            ]
            kind = _kind(spec.get("metadata", {}).get("config", {}))
        else:
            kind = upsampler_kind(self.upsampler)
        if not kind.startswith("spatial x"):
            raise LtxError(
                f"--spatial-upsampler-path {self.upsampler} is a {kind} upsampler; pass a spatial one "
                "(x2 or x1.5)"
            )
        return float(kind.removeprefix("spatial x"))

    @cached_property
    def upsampler_digest(self) -> str:
        return self.recorded["upsampler"] if self.recorded else self._digest(self.upsampler)

    def lora_digest(self, name: str = TINY_LORA) -> str:
        """One of the tiny model's own LoRAs (TINY_LORAS)."""
        return self._digest(self.tiny_lora(name))

    def _tiny_lora_rel(self, name: str) -> str:
        if name == TINY_LORA and self.distilled_lora is not None and self.root is not None:
            return str(self.distilled_lora.relative_to(self.root))  # the tiny 2.5's loras/ file
        return TINY_LORAS[name]

    def tiny_lora(self, name: str) -> Path:
        return (self.root or self.checkpoint.parent) / self._tiny_lora_rel(name)

    def has_tiny_lora(self, name: str) -> bool:
        """Whether this tiny model was created with that LoRA of its own (the tiny 2.5 has no IC-LoRA)."""
        from ltx.weights import tiny

        return self._tiny_lora_rel(name) in tiny.load_manifest(self.tiny_variant)["files"]

    def tiny_lora_metadata(self, name: str) -> dict:
        from ltx.weights import tiny

        spec = tiny.load_manifest(self.tiny_variant)["files"].get(self._tiny_lora_rel(name))
        if spec is None:
            raise LtxError(f"the tiny-{self.tiny_variant} model has no {TINY_LORAS[name]}; pass --lora PATH")
        return spec.get("metadata", {})

    @cached_property
    def gemma_digest(self) -> str:
        if self.recorded:
            return self.recorded["gemma"]
        if self.tiny_variant is not None or self.gemma.is_file():  # a packed text encoder is one file
            return self._digest(self.gemma)
        return self._tree_digest(self.gemma)

    @cached_property
    def enhancer_digest(self) -> str:
        return self._tree_digest(self.enhancer)

    @cached_property
    def gemma_kind(self) -> str:
        """The encoding Gemma's model_type: 'gemma3' or 'gemma4_unified' (LTX-2.5's), read off config.json."""
        if self.tiny_variant is not None:  # its files may not be written yet
            from ltx.weights import tiny

            return "gemma4_unified" if self.tiny_variant in tiny.VARIANTS_12 else "gemma3"
        if self.gemma.is_file():  # a packed text encoder: the config is in its metadata
            meta = _metadata(self.gemma)
            try:
                return json.loads(meta.get("gemma_config", "{}")).get("model_type", "")
            except (ValueError, AttributeError):
                return ""
        try:
            return json.loads((self.gemma / "config.json").read_text()).get("model_type", "")
        except (OSError, ValueError):
            return ""

    def _tree_digest(self, root: Path) -> str:
        """cache.keys.tree_digest with each file's digest memoised in the store (a 24 GB Gemma is hashed once)."""
        h = hashlib.sha256()
        for p in sorted(q for q in root.rglob("*") if q.is_file()):
            h.update(str(p.relative_to(root)).encode() + b"\0" + self.store.digest(p).encode() + b"\n")
        return h.hexdigest()


# The tiny LTX-2.5's split files (tests/reference/tiny25.py: the release's layout)
TINY25 = {
    "transformer": "diffusion_models/transformer.safetensors",
    "gemma": "text_encoders/gemma4",
    "video_vae": "vae/video_vae.safetensors",
    "conv_vae": "vae/video_vae_conv.safetensors",
    "audio_vae": "vae/audio_vae.safetensors",
    "upsampler": "latent_upscale_models/spatial_upscaler_x2.safetensors",
    "distilled_lora": "loras/distilled_lora.safetensors",
    "duration_head": "model_patches/duration_head.safetensors",
}


def _tiny(store: Store, variant: str) -> ModelFiles:
    from ltx.weights import tiny

    digest = tiny.manifest_digest(variant)[:16]
    root = store.local / "models" / f"tiny-{variant}-{digest}"
    if variant in tiny.VARIANTS_12:
        f = {k: root / v for k, v in TINY25.items()}
        return ModelFiles(
            f"tiny-{variant}",
            f["transformer"],
            f["upsampler"],
            f["gemma"],
            store,
            tiny_variant=variant,
            distilled_lora=f["distilled_lora"],
            root=root,
            video_vae=f["video_vae"],
            audio_vae=f["audio_vae"],
            duration_head=f["duration_head"],
            conv_vae=f["conv_vae"],
            diffusion_vae=f["video_vae"],
        )
    return ModelFiles(
        f"tiny-{variant}",
        root / "model.safetensors",
        root / "upsampler.safetensors",
        root / "gemma",
        store,
        tiny_variant=variant,
        distilled_lora=root / "distilled_lora.safetensors",
        root=root,
    )


def _file(option: str, path: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise LtxError(
            f"{option} {path} {'is not a file' if p.exists() else 'does not exist'}; check the path"
        )
    return p


SPLIT_OPTIONS = {  # split-checkpoint option -> the ModelFiles component it names
    "--transformer-path": "transformer",
    "--text-encoder-path": "text",
    "--video-vae-path": "video_vae",
    "--audio-vae-path": "audio_vae",
    "--duration-head-path": "duration_head",
}


def resolve_model(
    model: str | None,
    store: Store,
    *,
    pipeline: str = "distilled",
    checkpoint: str | None = None,
    upsampler: str | None = None,
    gemma: str | None = None,
    split: dict[str, str | None] | None = None,
) -> ModelFiles:
    """`tiny` (default), `tiny-2.3`, `tiny-2.5`, a folder, or a Hugging Face repo id; the files `pipeline`
    needs, unless `checkpoint`, `upsampler` or `gemma` (--checkpoint-path, --spatial-upsampler-path,
    --gemma-root) name them, and the split components `split` names (option -> path: SPLIT_OPTIONS), which
    replace the model's own. Without a model, --checkpoint-path's (--transformer-path's) folder is the model
    folder. Every component a generation reads must be found: else one line naming the option to pass."""
    split = {k: v for k, v in (split or {}).items() if v is not None}
    if "--transformer-path" in split and checkpoint is not None:
        raise LtxError("--transformer-path and --checkpoint-path both name the transformer; pass one of them")
    if "--text-encoder-path" in split and gemma is not None:
        raise LtxError("--text-encoder-path and --gemma-root both name the text encoder; pass one of them")
    checkpoint = split.pop("--transformer-path", checkpoint)
    gemma = split.pop("--text-encoder-path", gemma)
    files = _resolve_base(model, store, pipeline, checkpoint, upsampler, gemma, split)
    return _with_components(files, split)


def _with_components(files: ModelFiles, split: dict[str, str]) -> ModelFiles:
    """`files` with the split components the options name, then every component checked to be there."""
    for option, path in split.items():
        p = _file(option, path)
        kind = SPLIT_OPTIONS[option]
        if kind == "video_vae":
            what = vae_kind(p)
            if what not in ("conv", "diffusion"):
                raise LtxError(
                    f"{option} {path} holds no video VAE (its metadata 'config' has no 'vae' section)"
                )
            files.video_vae = p
            if what == "conv":  # the other decoder kind, if the model has one, stays available
                files.conv_vae = p
            else:
                files.diffusion_vae = p
        elif kind == "audio_vae":
            if not _holds(p, "audio_vae."):
                raise LtxError(f"{option} {path} holds no audio VAE (no 'audio_vae.*' weights)")
            files.audio_vae = p
        elif kind == "duration_head":
            if not _holds(p, "duration_head."):
                raise LtxError(f"{option} {path} holds no duration head (no 'duration_head.*' weights)")
            files.duration_head = p
    if files.tiny_variant is not None:
        return files
    needs = (
        ("video_vae", "vae.encoder.", "the video VAE", "--video-vae-path"),
        ("audio_vae", "audio_vae.decoder.", "the audio VAE", "--audio-vae-path"),
    )
    for kind, prefix, what, option in needs:
        path = files.component(kind)
        if not _holds(path, prefix):
            raise LtxError(
                f"{path.name} holds no {what} ('{prefix}*' weights) and none was given: it is a split checkpoint's "
                f"{'transformer' if path == files.checkpoint else 'component'} file; pass {option} FILE"
            )
    if files.duration_head is None and _holds(files.checkpoint, "duration_head."):
        files.duration_head = files.checkpoint
    return files


def _resolve_base(
    model: str | None,
    store: Store,
    pipeline: str,
    checkpoint: str | None,
    upsampler: str | None,
    gemma: str | None,
    split: dict[str, str],
) -> ModelFiles:
    overrides = [
        o
        for o, v in (
            ("--checkpoint-path", checkpoint),
            ("--spatial-upsampler-path", upsampler),
            ("--gemma-root", gemma),
            *split.items(),
        )
        if v is not None
    ]
    model = model or os.environ.get("LTX_MODEL") or (None if checkpoint else "tiny")
    if model in TINY_NAMES:
        if upsampler in TINY_UPSAMPLERS:
            overrides.remove("--spatial-upsampler-path")
        elif upsampler is not None and upsampler.startswith("tiny:"):
            raise LtxError(
                f"--spatial-upsampler-path {upsampler} is not one of the tiny model's upsamplers; use "
                f"{' or '.join(TINY_UPSAMPLERS)}"
            )
        if overrides:
            raise LtxError(
                f"{', '.join(overrides)} apply to real weights, not the built-in {model} model; pass --model "
                "DIR or a Hugging Face repo (or only --checkpoint-path FILE)"
            )
        files = _tiny(store, TINY_NAMES[model])
        if upsampler in TINY_UPSAMPLERS:
            files.upsampler = files.checkpoint.parent / TINY_UPSAMPLERS[upsampler]
        return files
    ckpt = _file("--checkpoint-path", checkpoint) if checkpoint else None
    up = _file("--spatial-upsampler-path", upsampler) if upsampler else None
    if model is None:  # the checkpoint's folder, or the split model holding its diffusion_models/
        folder = ckpt.parent.parent if ckpt.parent.name == "diffusion_models" else ckpt.parent
        inv = scan(folder, str(folder))
        name = ckpt.name
    else:
        root = Path(model).expanduser()
        if root.is_dir():
            from ltx.weights.convert import converted_files, is_converted

            if is_converted(root):
                if overrides:
                    raise LtxError(
                        f"{', '.join(overrides)} do not apply to {model}, a converted model directory (it holds "
                        "its own files); convert the files you want with `ltx convert`"
                    )
                c = converted_files(root)
                return ModelFiles(
                    root.name,
                    c["checkpoint"],
                    c["upsampler"],
                    c["gemma"],
                    store,
                    recorded=c["digests"],
                    root=root,
                    **c["parts"],  # a split model's components (video_vae, audio_vae, ...)
                )
        inv = locate(model)
        name = inv.repo or inv.root.name
    loras = inv.distilled_loras
    files = ModelFiles(
        name,
        ckpt or choose_checkpoint(inv, pipeline),
        up or choose_upsampler(inv),
        choose_gemma(inv, gemma),
        store,
        distilled_lora=loras[0] if len(loras) == 1 else None,
        root=inv.root,
        label=inv.label,
    )
    # a split model's own components (one of each kind; a choice among several is an option's job)
    diffusion, conv, audio = (inv.vaes.get(k, []) for k in ("diffusion", "conv", "audio"))
    files.diffusion_vae = diffusion[0] if len(diffusion) == 1 else None
    files.conv_vae = conv[0] if len(conv) == 1 else None
    files.video_vae = files.diffusion_vae or files.conv_vae
    files.audio_vae = audio[0] if len(audio) == 1 else None
    files.duration_head = inv.duration_heads[0] if len(inv.duration_heads) == 1 else None
    return files
