"""The report's study sections: layer probes (``probe``), permutation studies
(``permutation``) and training-free layer analyses (``analyze``: CKA heatmaps, CCA with
acoustic functionals per layer). Each turns the study's own JSON into report blocks.
"""
from __future__ import annotations

import math
from typing import Any

from reports import plots
from reports.blocks import UNTRAINED_TEXT, Figures, figure, fmt, interval, is_untrained_spec, p_text


def probe_blocks(probes: list[dict[str, Any]], figures: Figures) -> list[dict[str, Any]]:
    if not probes:
        return []
    b: list[dict[str, Any]] = [{"kind": "h", "level": 2, "text": "Layer probes", "id": "probes"}]
    for p in probes:
        best = p["best"]
        fs = p.get("feature_set", {})
        cfg = p.get("config", {})
        b.append({"kind": "h", "level": 3, "text": p["name"]})
        if is_untrained_spec(str(fs.get("spec", ""))):
            b.append({"kind": "p", "text": UNTRAINED_TEXT.format(what="the curve")})
        b.append({"kind": "p", "text":
                  f"`{fs.get('key')}` ({fs.get('spec')}), task {p['task']}, head {cfg.get('head')}, "
                  f"{cfg.get('seeds')} seed(s), {p['n_clips']['Train']} Train / "
                  f"{p['n_clips']['Val']} Val clips. **Best: layer {best['layer']} "
                  f"({best['pooling']} pooling), Val {p['metric']} {fmt(best['score'])} "
                  f"[{fmt(best['ci'][0])}, {fmt(best['ci'][1])}].** CI: {p['ci_method']}. "
                  f"Std: over seeds ({p['seed_meaning']})."})
        path = figures.draw(f"probe-{p['name']}", plots.plot_layer_curve, p)
        b += figure(path, f"{p['task']}: Val {p['metric']} against layer, one line per pooling, "
                        f"band: 95 % CI; star: best layer.")
        poolings = p["poolings"]
        by = {(r["layer"], r["pooling"]): r for r in p["results"]}
        rows, classes = [], []
        for layer in p["layers"]:
            row = [str(layer)]
            for pool in poolings:
                r = by.get((layer, pool))
                row += ([fmt(r["score"]), f"[{fmt(r['ci'][0])}, {fmt(r['ci'][1])}]",
                         fmt(r["std"])] if r else ["", "", ""])
            rows.append(row)
            classes.append("best" if layer == best["layer"] else None)
        headers = ["layer"] + [h for pool in poolings
                               for h in (f"{pool} {p['metric']}", "95 % CI", "std")]
        b.append({"kind": "table", "headers": headers, "rows": rows, "row_class": classes,
                  "align": ["r"] * len(headers)})
        ws = p.get("weighted_sum") or {}
        if ws:
            path = figures.draw(f"probe-weights-{p['name']}", plots.plot_layer_weights, p)
            b += figure(path, "Learned softmax layer weights of the weighted-sum head (mean over "
                            "seeds, error bars: std); dotted: uniform weights.")
            b.append({"kind": "p", "text": "Weighted-sum head: " + "; ".join(
                f"{pool}: Val {p['metric']} {fmt(e['score'])} [{fmt(e['ci'][0])}, "
                f"{fmt(e['ci'][1])}]" for pool, e in ws.items())})
    return b


def permutation_blocks(studies: list[dict[str, Any]], figures: Figures) -> list[dict[str, Any]]:
    if not studies:
        return []
    b: list[dict[str, Any]] = [{"kind": "h", "level": 2, "text": "Permutation studies",
                                "id": "permutation"}]
    for s in studies:
        b.append({"kind": "h", "level": 3, "text": s["name"]})
        # studies before the sequence heads recorded no "input" / "head_text"
        source = s.get("input") or f"layer {s['layer']} ({s['pooling']})"
        b.append({"kind": "p", "text":
                  f"Task {s['task']} from `{s['feature_set']['key']}`: {source}, auxiliary "
                  f"labels {', '.join(s['aux'])}; {s['trials']} "
                  f"trials per condition ({s['trial_meaning']}); Val/Test see "
                  f"{'the condition' if s.get('eval_aux') == 'same' else 'true'} labels."})
        b.append({"kind": "p", "text": f"Head: {head_description(s)}."})
        path = figures.draw(f"permutation-{s['name']}", plots.plot_permutation_density, s)
        b += figure(path, "Density (Gaussian KDE) of the Val score per condition; ticks: trials.")
        b.append({"kind": "table", "headers": ["condition", "meaning", "mean", "std", "min", "max"],
                  "rows": [[c, s["condition_meaning"].get(c, ""), fmt(st["mean"]), fmt(st["std"]),
                            fmt(st["min"]), fmt(st["max"])] for c, st in s["stats"].items()],
                  "align": ["l", "l", "r", "r", "r", "r"]})
        b.append({"kind": "table",
                  "headers": ["a", "b", "mean a - b", "t", "df", "p", "Cohen's d"],
                  "rows": [[t["a"], t["b"], f"{t['diff']:+.4f}", fmt(t["t"], 2), fmt(t["df"], 1),
                            p_text(t["p"]), fmt(t["cohen_d"], 2)] for t in s["tests"]],
                  "align": ["l", "l", "r", "r", "r", "r", "r"]})
        # studies before issue 12 ran Welch's test and recorded no "test"
        test = s.get("test") or (s["tests"][0].get("test") if s.get("tests") else None) or \
            "Welch two-sample t-test (scipy.stats.ttest_ind, equal_var=False), two-sided"
        other = (" (Welch's unequal-variance form: `permutation --welch`)"
                 if test.startswith("Student") else "")
        b.append({"kind": "p", "class": "meta",
                  "text": f"{test}{other}; head {s.get('head', 'ridge')}."})
    return b


def head_description(study: dict[str, Any]) -> str:
    """Which head a permutation study ran; a ridge study says it is the fast option, not the
    paper's model (also for studies that predate ``head_text``)."""
    from heads.permutation import HEAD_TEXT_RIDGE

    head = study.get("head", "ridge")
    if study.get("head_text"):
        return study["head_text"]
    return HEAD_TEXT_RIDGE if head == "ridge" else f"{head}, trained anew per trial"


def analysis_blocks(analyses: list[dict[str, Any]], figures: Figures) -> list[dict[str, Any]]:
    """One subsection per ``analyze`` study: which sets and clips, the CKA heatmaps, the
    cross-model best match per layer, and the CCA curve and table with its CIs."""
    if not analyses:
        return []
    b: list[dict[str, Any]] = [{"kind": "h", "level": 2, "text": "Layer analyses (training-free)",
                                "id": "analyses"}]
    for a in analyses:
        name = a.get("config", {}).get("name") or a["folder"].rsplit("/", 1)[-1]
        b.append({"kind": "h", "level": 3, "text": name})
        untrained = [s["key"] for s in a["sets"] if is_untrained_spec(str(s.get("spec", "")))]
        if untrained:
            b.append({"kind": "p", "text": UNTRAINED_TEXT.format(what="the analysis of "
                                                                + ", ".join(untrained))})
        cka = a["cka"]
        sets = ", ".join(f"`{s['key']}` ({s['spec']}, {len(s['layers'])} layers)" for s in a["sets"])
        b.append({"kind": "p", "text": f"Linear CKA of {sets}, {a['pooling']} pooling, over "
                                       f"{cka['n_clips']} clips ({cka['clips']})."})
        path = figures.draw(f"cka-{name}", plots.plot_cka, a)
        b += figure(path, "Linear CKA between layers (1: the same representation up to rotation "
                          "and scale; colour scale fixed to [0, 1]).")
        if cka.get("between"):
            b += _cross_model_table(a)
        for c in a.get("cca", []):
            b += _cca_blocks(a, c)
        if a.get("cca"):
            path = figures.draw(f"cca-{name}", plots.plot_cca_layers, a)
            b += figure(path, f"Held-out mean canonical correlation with the acoustic "
                              f"functionals against layer, band: {round(100 * a['ci_level'])} % "
                              f"CI; heatmap: first canonical correlation per descriptor group.")
    return b


def _cross_model_table(a: dict[str, Any]) -> list[dict[str, Any]]:
    """For every layer of the first set, the most similar layer of the second."""
    rows_set, cols_set = a["sets"][0], a["sets"][1]
    rows = []
    for layer, values in zip(rows_set["layers"], a["cka"]["between"]["values"]):
        finite = [(v, c) for v, c in zip(values, cols_set["layers"])
                  if v is not None and math.isfinite(v)]
        if finite:
            v, c = max(finite)
            rows.append([str(layer), str(c), fmt(v, 3)])
    return [{"kind": "p", "text": f"Most similar layer of `{cols_set['key']}` for each layer of "
                                  f"`{rows_set['key']}`:"},
            {"kind": "table", "headers": [f"layer of {rows_set['key']}",
                                          f"closest layer of {cols_set['key']}", "CKA"],
             "rows": rows, "align": ["r", "r", "r"]}]


def _cca_blocks(a: dict[str, Any], c: dict[str, Any]) -> list[dict[str, Any]]:
    level = round(100 * a["ci_level"])
    groups = list(c.get("groups") or {})
    b: list[dict[str, Any]] = [{"kind": "p", "text":
        f"CCA of `{c['set']}` with `{c['acoustic']}`: {c['division']} ({c['n_fit']} fitting / "
        f"{c['n_held_out']} held-out clips); mean of the first "
        f"{a['config'].get('n_components')} held-out canonical correlations per layer, "
        f"{level} % percentile bootstrap CI over the held-out clips."
        + ("" if c["best_layer"] is None else
           f" **Highest: layer {c['best_layer']}**" + (
               " (its CI lies above every other layer's)." if c["best_separated"] else
               " (its CI overlaps the runner-up's: no single best layer).")) }]
    rows, classes = [], []
    for r in c["per_layer"]:
        best = r.get("best_group")
        rows.append([str(r["layer"]), fmt(r["mean_cc"], 3), interval(r["ci"], 3), fmt(r["first_cc"], 3),
                     f"{r['reg']:g}"] + ([f"{best} ({fmt(r['groups'][best], 3)})" if best else "-"]
                                         if groups else []))
        classes.append("best" if r["layer"] == c["best_layer"] and c["best_separated"] else None)
    headers = ["layer", "mean cc", f"{level} % CI", "first cc", "shrinkage"] + (
        ["best descriptor group (cc)"] if groups else [])
    b.append({"kind": "table", "headers": headers, "rows": rows, "row_class": classes,
              "align": ["r"] * (len(headers) - 1) + (["l"] if groups else ["r"])})
    return b
