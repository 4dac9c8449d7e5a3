"""Widgets at the trait level (no browser): image input, program view, cache inspector."""

from __future__ import annotations

import io
import time
from datetime import datetime, timezone
from typing import Any

import pytest
from PIL import Image

from sglang_nb.widgets import CacheInspector, CacheInspectorFallback, ImageInput, ProgramView, _stats


def _png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (10, 120, 200)).save(buf, format="PNG")
    return buf.getvalue()


def _browser_upload(widget: ImageInput, data: bytes, name: str = "x.png") -> None:
    # What the browser sends for a FileUpload v8 pick.
    widget.uploader.set_state({"value": [{"name": name, "type": "image/png", "size": len(data),
                                          "content": memoryview(data),
                                          "last_modified": int(datetime.now(timezone.utc).timestamp() * 1000)}]})


def test_image_upload_previews_and_downscales() -> None:
    picker = ImageInput(max_side=64)
    _browser_upload(picker, _png(300, 150))
    assert picker.value is not None and picker.preview.value == picker.value
    img = Image.open(io.BytesIO(picker.value))
    assert img.size == (64, 32)
    assert "downscaled to 64×32" in picker.message
    expr = picker.image()
    assert type(expr).__name__ == "SglImage"


def test_image_too_large_or_not_an_image_is_explained() -> None:
    picker = ImageInput(max_bytes=1000)
    _browser_upload(picker, _png(400, 400))
    assert picker.value is None and "websocket" in picker.message and picker.uploader.value == ()
    picker2 = ImageInput()
    picker2.load_bytes(b"not an image", name="notes.txt")
    assert picker2.value is None and "not an image" in picker2.message
    with pytest.raises(ValueError, match="No image yet"):
        picker2.image()


def test_stats_kpis_rates_and_tree_nesting() -> None:
    prev = {"decode_tokens": 10, "cache": {"evictions": 1}}
    state = {"max_total_num_tokens": 1000, "used_kv_tokens": 100, "cache": {"cached_tokens": 300, "evictions": 3},
             "cache_hit_rate": 0.5, "recent_cache_hit_rate": 0.75, "decode_tokens": 30, "evictable_kv_tokens": 250,
             "locked_kv_tokens": 50, "num_running_reqs": 1, "num_waiting_reqs": 2}
    k = _stats.kpis(state, prev, 2.0)
    assert k["pool_usage"] == 0.4 and k["throughput_tok_s"] == 10.0 and k["evictions_per_min"] == 60.0
    assert (k["running"], k["queued"], k["locked_tokens"]) == (1, 2, 50)
    snap = {"nodes": [
        {"id": 1, "parent": None, "num_tokens": 3, "token_ids_preview": [1], "text_preview": "The", "lock_ref": 1,
         "hit_count": 2, "last_access_age_s": 1.0, "num_children": 2},
        {"id": 2, "parent": 1, "num_tokens": 2, "token_ids_preview": [2], "text_preview": " cat", "lock_ref": 0,
         "hit_count": 0, "last_access_age_s": 5.0, "num_children": 0},
        {"id": 3, "parent": 1, "num_tokens": 2, "token_ids_preview": [3], "text_preview": " dog", "lock_ref": 0,
         "hit_count": 0, "last_access_age_s": 0.5, "num_children": 0}]}
    roots = _stats.nest(snap)
    assert [c["text_preview"] for c in roots[0]["children"]] == [" dog", " cat"]  # most recent first
    html = _stats.tree_html(roots)
    assert "<details" in html and "locked" not in html.split("</summary>")[1] and "🔒1" in html


@pytest.mark.parametrize("fallback", [False, True])
def test_cache_inspector_shows_live_state_and_controls(shared_rt: Any, fallback: bool) -> None:
    shared_rt.generate("Widgets share a prefix: one", {"max_new_tokens": 2})
    shared_rt.generate("Widgets share a prefix: two", {"max_new_tokens": 2})
    w = CacheInspector(shared_rt, interval=0, max_nodes=50, fallback=fallback)
    try:
        assert isinstance(w, CacheInspectorFallback) == fallback
        assert w.kpis["pool_tokens"] > 0 and w.kpis["cached_tokens"] > 0 and w.tree
        state = w.get_state() if not fallback else {}
        if not fallback:
            assert state["kpis"]["hit_rate"] >= 0 and "_esm" in state
            w._on_front_msg(w, {"type": "flush"}, [])
        else:
            assert "hit rate" in w.kpi_view.value and "<details" in w.tree_view.value or "<div" in w.tree_view.value
            w.flush()
        assert w.status in ("cache flushed", "not flushed: The cache was not flushed: requests are running or "
                            "waiting; retry when idle or `%sgl abort --all` first.")
        w.refresh()
    finally:
        w.close()


def test_cache_inspector_live_refresh_runs_in_background(shared_rt: Any) -> None:
    w = CacheInspector(shared_rt, interval=0.2)
    try:
        first = w.status
        deadline = time.monotonic() + 10
        while w.status == first and time.monotonic() < deadline:
            time.sleep(0.1)
        assert w.poller.running and w.status != first
        w.paused = True
        assert not w.poller.running
    finally:
        w.close()


def test_program_view_one_pane_per_fork(shared_rt: Any) -> None:
    import sglang_nb as sgl

    @sgl.function
    def two(s: Any) -> None:
        s += "Pick a fruit:"
        forks = s.fork(2)
        for f in forks:
            f += sgl.gen("fruit", max_tokens=3, temperature=0)
        forks.join()

    state = two.run(stream=True, backend=shared_rt)
    view = ProgramView(state, model=shared_rt.model)
    deadline = time.monotonic() + 60
    while not view.done and time.monotonic() < deadline:
        time.sleep(0.1)
    assert view.done and "served from cache" in view.footer
    labels = [b[0] for b in view.branches]
    assert labels == ["main", "fork 0", "fork 1"] and len(view.panes.children) == 2
    view.close()
