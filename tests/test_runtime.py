"""Stages load only the components they need, free them before the next stage, and a fully cached
run loads nothing (in-process, on the tiny model)."""

from __future__ import annotations

from pathlib import Path

from cache.store import Store
from stages import pipeline, runtime
from stages.framework import ensure

OPTS = dict(prompt="a red fox", height=64, width=128, num_frames=9)


def quiet(msg: str) -> None:
    pass


def test_each_stage_loads_only_its_components(tmp_path: Path):
    store = Store(tmp_path)
    nodes, _, _ = pipeline.build(pipeline.Options(**OPTS), store)
    runtime.release()
    ensure(store, nodes["encode"], echo=quiet)
    assert runtime.loaded_kinds() == {"text"}
    runtime.release()
    ensure(store, nodes["denoise"], echo=quiet)  # encode is cached: Gemma is never loaded
    assert runtime.loaded_kinds() == {"transformer"}
    ensure(store, nodes["upsample"], echo=quiet)
    assert "transformer" not in runtime.loaded_kinds()  # freed before the next model stage
    assert runtime.loaded_kinds() == {"video_encoder", "upsampler"}
    ensure(store, nodes["mux"], echo=quiet)
    assert "text" not in runtime.loaded_kinds()
    runtime.release()
    messages: list[str] = []
    ensure(store, nodes["mux"], echo=messages.append)
    assert runtime.loaded_kinds() == set() and messages == [f"cached mux {nodes['mux'].key[:8]}"]
