"""What the cache inspector shows, computed from `/cache_state` snapshots (pure functions).

The runtime reports counters and a flat, bounded list of radix-tree nodes; this module turns two
consecutive snapshots into KPIs (hit rates, pool usage, throughput, evictions) and the flat list into
a nested tree, and renders both as HTML for the stock-ipywidgets fallback.
"""

from __future__ import annotations

import html
from typing import Any


def kpis(state: dict[str, Any], prev: dict[str, Any] | None, dt: float) -> dict[str, Any]:
    """Headline numbers; rates (throughput, evictions) come from counter deltas over `dt` seconds."""
    cache = state.get("cache", {})
    total = int(state.get("max_total_num_tokens") or 0)
    cached = int(cache.get("cached_tokens", 0))
    used = int(state.get("used_kv_tokens", 0))
    out = {
        "hit_rate": float(state.get("cache_hit_rate", 0.0)),
        "recent_hit_rate": float(state.get("recent_cache_hit_rate", 0.0)),
        "pool_tokens": total,
        "used_tokens": used,
        "cached_tokens": cached,
        "pool_usage": (used + cached) / total if total else 0.0,
        "evictable_tokens": int(state.get("evictable_kv_tokens", cache.get("evictable_tokens", 0))),
        "locked_tokens": int(state.get("locked_kv_tokens", cache.get("locked_tokens", 0))),
        "running": int(state.get("num_running_reqs", 0)),
        "queued": int(state.get("num_waiting_reqs", 0)),
        "num_requests": int(state.get("num_requests", 0)),
        "prompt_tokens": int(state.get("prompt_tokens", 0)),
        "cached_prompt_tokens": int(state.get("cached_prompt_tokens", 0)),
        "evictions": int(cache.get("evictions", 0)),
        "throughput_tok_s": 0.0,
        "evictions_per_min": 0.0,
    }
    if prev is not None and dt > 0:
        decoded = int(state.get("decode_tokens", 0)) - int(prev.get("decode_tokens", 0))
        evicted = out["evictions"] - int(prev.get("cache", {}).get("evictions", 0))
        out["throughput_tok_s"] = round(max(decoded, 0) / dt, 2)
        out["evictions_per_min"] = round(max(evicted, 0) * 60 / dt, 2)
    return out


def nest(snapshot: dict[str, Any]) -> list[dict[str, Any]]:
    """The flat node list of a tree snapshot as nested dicts (children most recent first)."""
    nodes: dict[Any, dict[str, Any]] = {n["id"]: {**n, "children": []} for n in snapshot.get("nodes", [])}
    roots: list[dict[str, Any]] = []
    for node in nodes.values():
        parent = nodes.get(node["parent"]) if node["parent"] is not None else None
        (parent["children"] if parent is not None else roots).append(node)
    for node in nodes.values():
        node["children"].sort(key=lambda n: n["last_access_age_s"])
    roots.sort(key=lambda n: n["last_access_age_s"])
    return roots


def _pct(x: float) -> str:
    return f"{x:.0%}"


def kpi_html(k: dict[str, Any]) -> str:
    """A compact KPI table with a pool-usage bar (fallback view)."""
    bar = (f'<div style="background:#eee;width:200px;height:8px;border-radius:4px">'
           f'<div style="background:#4a90d9;width:{min(k["pool_usage"], 1) * 200:.0f}px;height:8px;'
           f'border-radius:4px"></div></div>')
    rows = [
        ("hit rate", f"{_pct(k['hit_rate'])} cumulative · {_pct(k['recent_hit_rate'])} recent"),
        ("prompt tokens", f"{k['cached_prompt_tokens']} of {k['prompt_tokens']} served from cache"),
        ("KV pool", f"{_pct(k['pool_usage'])} of {k['pool_tokens']} tokens {bar}"),
        ("cached", f"{k['cached_tokens']} tokens: {k['evictable_tokens']} evictable · {k['locked_tokens']} locked"),
        ("requests", f"{k['running']} running · {k['queued']} queued · {k['num_requests']} total"),
        ("throughput", f"{k['throughput_tok_s']:.1f} tok/s · {k['evictions_per_min']:.1f} evictions/min"),
    ]
    cells = "".join(f"<tr><th style='text-align:left;padding-right:8px'>{a}</th><td>{b}</td></tr>" for a, b in rows)
    return f'<table class="sglang-nb-kpis">{cells}</table>'


def tree_html(roots: list[dict[str, Any]], *, open_depth: int = 2) -> str:
    """Collapsible `<details>` tree: token preview, size, locks, hits, recency (fallback view)."""
    def node_html(n: dict[str, Any], depth: int) -> str:
        preview = html.escape(repr(n.get("text_preview") or n.get("token_ids_preview")))
        lock = f"🔒{n['lock_ref']}" if n["lock_ref"] else "evictable"
        label = (f"<code>{preview}</code> · {n['num_tokens']} tok · {lock} · {n['hit_count']} hits · "
                 f"{n['last_access_age_s']:.1f} s ago")
        if not n["children"]:
            return f'<div style="margin-left:1em">{label}</div>'
        kids = "".join(node_html(c, depth + 1) for c in n["children"])
        opened = " open" if depth < open_depth else ""
        return f'<details{opened} style="margin-left:1em"><summary>{label}</summary>{kids}</details>'

    if not roots:
        return "<i>The radix cache is empty.</i>"
    return '<div class="sglang-nb-tree">' + "".join(node_html(r, 0) for r in roots) + "</div>"


def request_tree_html(tree: dict[str, Any] | None) -> str:
    """The last program's request tree with prompt and cached tokens per node (fallback view)."""
    if not tree:
        return "<i>No program has run yet.</i>"

    def visit(node: dict[str, Any]) -> str:
        text = node["text"].replace("\n", "\\n")
        info = "".join(f" · {r['kind']}: {r.get('cached_tokens')}/{r.get('prompt_tokens')} cached"
                       for r in node.get("requests", []))
        kids = "".join(visit(c) for c in node.get("children", []))
        return f'<div style="margin-left:1em"><code>{html.escape(text[:60])}</code>{html.escape(info)}{kids}</div>'

    body = "".join(visit(c) for c in tree.get("root", {}).get("children", []))
    return f"<div>hit ratio {tree.get('cache_hit_ratio', 0):.0%}</div>{body}"


__all__ = ["kpi_html", "kpis", "nest", "request_tree_html", "tree_html"]
