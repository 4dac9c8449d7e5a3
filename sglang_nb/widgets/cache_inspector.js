// The cache inspector's view (anywidget ES module): KPIs, controls, the radix tree and the last
// request tree. State comes from the kernel as traits (kpis, tree, request_tree, status, paused);
// buttons send {type: "flush" | "abort_all" | "refresh"} messages or toggle `paused`.

const STYLE = `
.sgl-ci { font-family: var(--jp-ui-font-family, sans-serif); font-size: 12px; border: 1px solid #ddd;
  border-radius: 6px; padding: 8px; max-width: 900px; }
.sgl-ci h4 { margin: 8px 0 4px; font-size: 12px; }
.sgl-ci .kpis { display: flex; flex-wrap: wrap; gap: 8px; }
.sgl-ci .kpi { background: #f5f7fa; border-radius: 4px; padding: 4px 8px; min-width: 110px; }
.sgl-ci .kpi b { display: block; font-size: 15px; }
.sgl-ci .bar { background: #e5e5e5; height: 6px; border-radius: 3px; margin-top: 3px; }
.sgl-ci .bar > div { background: #4a90d9; height: 6px; border-radius: 3px; }
.sgl-ci .controls button { margin-right: 4px; }
.sgl-ci details, .sgl-ci .leaf { margin-left: 14px; }
.sgl-ci code { background: #f0f0f0; padding: 0 3px; border-radius: 3px; }
.sgl-ci .locked { color: #b35c00; }
.sgl-ci .status { color: #777; margin-top: 6px; }
`;

function pct(x) { return `${Math.round((x || 0) * 100)}%`; }

function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v; else if (k === "onclick") node.onclick = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.appendChild(c);
  return node;
}

function kpiBox(label, value, sub, usage) {
  const box = el("div", { class: "kpi" }, [el("span", { text: label }), el("b", { text: value })]);
  if (sub) box.appendChild(el("small", { text: sub }));
  if (usage !== undefined) {
    const bar = el("div", { class: "bar" }, [el("div")]);
    bar.firstChild.style.width = `${Math.min(100, usage * 100)}%`;
    box.appendChild(bar);
  }
  return box;
}

function recencyColor(age) {
  // Recently used nodes are darker: full colour under 5 s, fading over a minute.
  const t = Math.min(1, Math.max(0, (age - 5) / 55));
  return `rgba(74, 144, 217, ${(1 - 0.8 * t).toFixed(2)})`;
}

// Which nodes the user opened or closed, so a refresh keeps the tree as they left it.
const toggled = new Map();

function radixNode(n, depth) {
  const preview = n.text_preview !== null && n.text_preview !== undefined ? n.text_preview : JSON.stringify(n.token_ids_preview);
  const label = el("span", {}, [
    el("code", { text: JSON.stringify(preview) }),
    el("span", { text: ` ${n.num_tokens} tok · ` }),
    el("span", { class: n.lock_ref ? "locked" : "", text: n.lock_ref ? `locked ×${n.lock_ref}` : "evictable" }),
    el("span", { text: ` · ${n.hit_count} hits · ${n.last_access_age_s.toFixed(1)} s ago` }),
  ]);
  label.firstChild.style.borderLeft = `4px solid ${recencyColor(n.last_access_age_s)}`;
  if (!n.children || n.children.length === 0) return el("div", { class: "leaf sgl-node" }, [label]);
  const details = el("details", { class: "sgl-node" }, [el("summary", {}, [label])]);
  const open = toggled.has(n.id) ? toggled.get(n.id) : depth < 2;
  if (open) details.setAttribute("open", "");
  details.addEventListener("toggle", () => toggled.set(n.id, details.open));
  for (const c of n.children) details.appendChild(radixNode(c, depth + 1));
  return details;
}

function requestNode(n) {
  const reqs = (n.requests || []).map((r) => `${r.kind}: ${r.cached_tokens ?? "?"} of ${r.prompt_tokens ?? "?"} cached`);
  const row = el("div", { class: "leaf" }, [
    el("code", { text: JSON.stringify(n.text.length > 60 ? n.text.slice(0, 60) + "…" : n.text) }),
    el("span", { text: reqs.length ? ` · ${reqs.join(" · ")}` : "" }),
  ]);
  for (const c of n.children || []) row.appendChild(requestNode(c));
  return row;
}

function render({ model, el: root }) {
  const style = document.createElement("style");
  style.textContent = STYLE;
  const box = el("div", { class: "sgl-ci sglang-nb-cache-inspector" });
  root.appendChild(style);
  root.appendChild(box);
  let armed = false;

  const draw = () => {
    const k = model.get("kpis") || {};
    box.replaceChildren();
    box.appendChild(el("h4", { text: "sglang_nb cache inspector" }));
    box.appendChild(el("div", { class: "kpis" }, [
      kpiBox("hit rate", pct(k.hit_rate), `recent ${pct(k.recent_hit_rate)}`),
      kpiBox("served from cache", `${k.cached_prompt_tokens ?? 0}/${k.prompt_tokens ?? 0}`, "prompt tokens"),
      kpiBox("KV pool", pct(k.pool_usage), `${k.pool_tokens ?? 0} tokens`, k.pool_usage || 0),
      kpiBox("cached tokens", `${k.cached_tokens ?? 0}`, `${k.evictable_tokens ?? 0} evictable · ${k.locked_tokens ?? 0} locked`),
      kpiBox("requests", `${k.running ?? 0} running`, `${k.queued ?? 0} queued`),
      kpiBox("throughput", `${(k.throughput_tok_s ?? 0).toFixed(1)} tok/s`, `${(k.evictions_per_min ?? 0).toFixed(1)} evictions/min`),
    ]));
    const paused = model.get("paused");
    box.appendChild(el("div", { class: "controls" }, [
      el("button", { text: paused ? "Resume" : "Pause", onclick: () => { model.set("paused", !paused); model.save_changes(); } }),
      el("button", { text: "Refresh", onclick: () => model.send({ type: "refresh" }) }),
      el("button", { text: armed ? "Confirm flush" : "Flush cache", onclick: () => {
        if (armed) { model.send({ type: "flush" }); armed = false; } else { armed = true; }
        draw();
      } }),
      el("button", { text: "Abort all", onclick: () => model.send({ type: "abort_all" }) }),
    ]));
    const tree = model.get("tree") || [];
    box.appendChild(el("h4", { text: `radix tree${model.get("truncated") ? " (most recent nodes)" : ""}` }));
    const treeBox = el("div", { class: "sgl-tree" });
    if (tree.length === 0) treeBox.appendChild(el("i", { text: "The radix cache is empty." }));
    for (const n of tree) treeBox.appendChild(radixNode(n, 0));
    box.appendChild(treeBox);
    const rt = model.get("request_tree") || {};
    box.appendChild(el("h4", { text: "last request tree" }));
    if (!rt.root) {
      box.appendChild(el("i", { text: "No %%sgl cell or program has run yet." }));
    } else {
      box.appendChild(el("div", { text: `hit ratio ${pct(rt.cache_hit_ratio)}` }));
      for (const c of rt.root.children || []) box.appendChild(requestNode(c));
    }
    box.appendChild(el("div", { class: "status", text: model.get("status") || "" }));
  };

  draw();
  for (const name of ["kpis", "tree", "request_tree", "status", "paused", "truncated"]) {
    model.on(`change:${name}`, draw);
  }
  return () => {
    for (const name of ["kpis", "tree", "request_tree", "status", "paused", "truncated"]) {
      model.off(`change:${name}`, draw);
    }
  };
}

export default { render };
