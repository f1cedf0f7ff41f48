"""Figures of the report, one function per figure; each saves a PNG and returns its path.

Matplotlib with the Agg backend (no display needed). Every function takes plain data (the
content of metrics.json, probe.json, permutation.json, curves_seed*.json) and a path; none
computes a score.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

DPI = 110
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#17becf", "#7f7f7f", "#bcbd22")
"""Line / bar colours, in order."""
POOLING_COLOURS = {"mean": "#1f77b4", "last": "#d62728", "first": "#2ca02c", "max": "#ff7f0e",
                   "std": "#9467bd"}
"""One colour per pooling, the same in every report (a pooling outside it: a stable pick)."""


def pooling_colour(pooling: str) -> str:
    """The fixed colour of a pooling (:data:`POOLING_COLOURS`; others by a stable hash)."""
    import zlib

    return POOLING_COLOURS.get(pooling) or PALETTE[5 + zlib.crc32(pooling.encode()) % (len(PALETTE) - 5)]


def _style(ax: Any) -> None:
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.grid(True, axis="y", alpha=0.3)


def _save(fig: Any, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    fig.savefig(tmp, dpi=DPI, format="png", bbox_inches="tight")  # legends outside the axes kept
    plt.close(fig)
    os.replace(tmp, path)
    return path


def _finite(values: Sequence[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def _short(text: str, n: int = 38) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


# --------------------------------------------------------------------------------------------
# probes
# --------------------------------------------------------------------------------------------


def plot_layer_curve(probe: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Score against layer, one line per pooling with its CI band; best layer marked.

    The weighted-sum head's score (when present) is a dashed line in the pooling's colour.
    """
    fig, ax = plt.subplots(figsize=(9.5, 4.2))
    poolings = list(probe.get("poolings") or sorted({r["pooling"] for r in probe["results"]}))
    for i, pooling in enumerate(poolings):
        rows = sorted((r for r in probe["results"] if r["pooling"] == pooling),
                      key=lambda r: r["layer"])
        if not rows:
            continue
        color = pooling_colour(pooling)
        x = np.array([r["layer"] for r in rows])
        y = _finite([r["score"] for r in rows])
        lo = _finite([r["ci"][0] for r in rows])
        hi = _finite([r["ci"][1] for r in rows])
        ax.fill_between(x, lo, hi, color=color, alpha=0.18, linewidth=0)
        ax.plot(x, y, marker="o", markersize=4, color=color, label=f"{pooling} pooling")
        ws = (probe.get("weighted_sum") or {}).get(pooling)
        if ws:
            ax.axhline(ws["score"], color=color, linestyle="--", linewidth=1.2,
                       label=f"weighted sum ({pooling}): {ws['score']:.3f}")
    best = probe.get("best")
    if best:  # a star only when the best layer's CI lies clear of the runner-up's
        separated = best.get("separated", True)
        ax.plot([best["layer"]], [best["score"]], marker="*" if separated else "o",
                markersize=16 if separated else 11, color="black", zorder=5, linestyle="none",
                fillstyle="full" if separated else "none",
                label=(f"best: layer {best['layer']} ({best['pooling']}) {best['score']:.3f}"
                       if separated else
                       f"highest: layer {best['layer']} ({best['pooling']}) {best['score']:.3f}, "
                       f"CI overlaps the next"))
    ax.set_xlabel("layer (hidden-state index; 0 = CNN features)")
    ax.set_ylabel(f"Val {probe.get('metric', 'score')}")
    layers = sorted({r["layer"] for r in probe["results"]})
    if layers and len(layers) <= 30:
        ax.set_xticks(layers)
    fs = probe.get("feature_set", {})
    ax.set_title(f"{probe.get('task')} · {fs.get('name', '')} · {probe.get('config', {}).get('head', '')}"
                 f" · band: 95 % CI", fontsize=10)
    _style(ax)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def plot_layer_weights(probe: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Learned softmax layer weights of the weighted-sum head, per pooling (error bar: std)."""
    ws = probe.get("weighted_sum") or {}
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    poolings = list(ws)
    width = 0.8 / max(1, len(poolings))
    for i, pooling in enumerate(poolings):
        entry = ws[pooling]
        layers = np.asarray(entry["layers"])
        x = np.arange(len(layers)) + (i - (len(poolings) - 1) / 2) * width
        ax.bar(x, entry["weights"], width=width, yerr=entry.get("weights_std"), capsize=2,
               error_kw={"elinewidth": 0.8, "ecolor": "#555555"},
               color=pooling_colour(pooling), label=f"{pooling} (Val {entry['score']:.3f})")
    if poolings:
        layers = ws[poolings[0]]["layers"]
        ax.axhline(1.0 / len(layers), color="grey", linestyle=":", linewidth=1,
                   label="uniform (1/L)")
        ax.set_xticks(np.arange(len(layers)))
        ax.set_xticklabels([str(layer) for layer in layers])
    ax.set_xlabel("layer")
    ax.set_ylabel("softmax weight (sums to 1)")
    ax.set_title(f"{probe.get('task')}: learned layer weights (weighted-sum head, mean over seeds)",
                 fontsize=10)
    _style(ax)
    ax.legend(fontsize=8, frameon=False)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# permutation study
# --------------------------------------------------------------------------------------------


def plot_permutation_density(study: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Density of the trial scores per condition (Gaussian KDE, rug below; a spike when all
    trials of a condition scored the same)."""
    from scipy.stats import gaussian_kde

    scores: Mapping[str, Sequence[float]] = study["scores"]
    fig, ax = plt.subplots(figsize=(9.5, 4.0))
    all_vals = np.concatenate([np.asarray(v, dtype=float) for v in scores.values() if len(v)])
    span = float(np.ptp(all_vals)) if all_vals.size else 1.0
    spread = max([float(np.std(v)) for v in scores.values() if len(v) > 1] or [0.0])
    pad = max(span * 0.15, 3 * spread, 1e-3)  # room for the kernels' tails
    grid = np.linspace(all_vals.min() - pad, all_vals.max() + pad, 400) if all_vals.size else None
    top = 0.0
    for i, (cond, vals) in enumerate(scores.items()):
        v = np.asarray(vals, dtype=float)
        v = v[np.isfinite(v)]
        if not v.size or grid is None:
            continue
        color = PALETTE[i % len(PALETTE)]
        label = f"{cond}: {v.mean():.4f} ± {v.std(ddof=1) if v.size > 1 else 0:.4f} (n={v.size})"
        if v.size > 1 and np.std(v) > 1e-12:
            dens = gaussian_kde(v)(grid)
            ax.plot(grid, dens, color=color, label=label)
            ax.fill_between(grid, dens, color=color, alpha=0.15)
            top = max(top, float(dens.max()))
        else:
            ax.axvline(float(v[0]), color=color, label=label + " (no spread)")
        ax.plot(v, np.full(v.size, 0.025 + 0.035 * i), "|", color=color, markersize=7,
                transform=ax.get_xaxis_transform())  # rug: one tick per trial
    ax.set_ylim(0, top * 1.25 if top else 1.0)
    ax.set_xlabel(f"Val {study.get('metric', 'score')} per trial")
    ax.set_ylabel("density")
    ax.set_title(f"{study.get('task')}: auxiliary labels {', '.join(study.get('aux', []))} · "
                 f"layer {study.get('layer')} ({study.get('pooling')}) · "
                 f"{study.get('trials')} trials", fontsize=10)
    _style(ax)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# runs
# --------------------------------------------------------------------------------------------


def plot_per_column(per_run: Mapping[str, Mapping[str, float]], path: str | os.PathLike, *,
                    title: str = "", metric: str = "CCC") -> Path:
    """Grouped bars: one group per label column, one bar per run."""
    runs = list(per_run)
    columns: list[str] = []
    for r in runs:
        columns += [c for c in per_run[r] if c not in columns]
    n_cols = max(1, len(columns))
    fig_w = min(14.0, max(6.0, 0.45 * n_cols * max(1, len(runs)) ** 0.5 + 2))
    fig, ax = plt.subplots(figsize=(fig_w, 4.2))
    width = 0.8 / max(1, len(runs))
    x = np.arange(len(columns))
    for i, r in enumerate(runs):
        vals = _finite([per_run[r].get(c) for c in columns])
        ax.bar(x + (i - (len(runs) - 1) / 2) * width, np.nan_to_num(vals), width=width,
               color=PALETTE[i % len(PALETTE)], label=_short(r, 48))
    ax.set_xticks(x)
    ax.set_xticklabels(columns, rotation=45 if n_cols > 6 else 0, ha="right" if n_cols > 6 else "center",
                       fontsize=8)
    ax.set_ylabel(f"Val {metric}")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_title(title, fontsize=10)
    _style(ax)
    # one run per legend line, right of the axes: long run names never overlap the ticks
    ax.legend(fontsize=8, frameon=False, ncol=1, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def plot_confusion(matrix: Sequence[Sequence[int]], classes: Sequence[str],
                   path: str | os.PathLike, *, title: str = "") -> Path:
    """Confusion matrix: colour = share of the true class (row-normalised), text = counts."""
    m = np.asarray(matrix, dtype=np.float64)
    rows = m.sum(axis=1, keepdims=True)
    share = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    k = len(classes)
    size = min(9.0, max(3.8, 0.55 * k + 2.2))
    fig, ax = plt.subplots(figsize=(size + 0.8, size))
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=8,
                    color="white" if share[i, j] > 0.6 else "black")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xticklabels(classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticklabels(classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    return _save(fig, path)


def plot_learning_curves(curves: Sequence[Mapping[str, Any]], path: str | os.PathLike, *,
                         title: str = "") -> Path:
    """Train loss (left) and Val score (right) per epoch; one line per seed and series.

    Args:
        curves: normalised curves (``reports.report.normalise_curve``): ``epoch`` list,
            ``train_loss`` and ``val_score`` dicts of name -> list.
    """
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for s, c in enumerate(curves):
        epochs = c.get("epoch") or []
        for i, (name, vals) in enumerate((c.get("train_loss") or {}).items()):
            ax1.plot(epochs[:len(vals)] or range(len(vals)), vals, color=PALETTE[i % len(PALETTE)],
                     alpha=0.9 if s == 0 else 0.45, label=f"{name}" if s == 0 else None)
        for i, (name, vals) in enumerate((c.get("val_score") or {}).items()):
            ax2.plot(epochs[:len(vals)] or range(len(vals)), vals, color=PALETTE[i % len(PALETTE)],
                     alpha=0.9 if s == 0 else 0.45, label=f"{name}" if s == 0 else None)
    ax1.set_title("train loss", fontsize=10)
    ax2.set_title("Val score", fontsize=10)
    for ax in (ax1, ax2):
        ax.set_xlabel("epoch")
        _style(ax)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, frameon=False)
    fig.suptitle(f"{title} ({len(curves)} seed{'s' if len(curves) != 1 else ''}; "
                 "faded lines: other seeds)", fontsize=10)
    return _save(fig, path)


def plot_task_weights(curves: Sequence[Mapping[str, Any]], path: str | os.PathLike, *,
                      title: str = "") -> Path:
    """Task-weight trajectories per epoch, one line per task (faded: other seeds)."""
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    for s, c in enumerate(curves):
        epochs = c.get("epoch") or []
        for i, (name, vals) in enumerate((c.get("task_weights") or {}).items()):
            ax.plot(epochs[:len(vals)] or range(len(vals)), vals, color=PALETTE[i % len(PALETTE)],
                    alpha=0.9 if s == 0 else 0.4, label=name if s == 0 else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel("task weight")
    ax.set_title(title, fontsize=10)
    _style(ax)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, frameon=False)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# training-free layer analysis
# --------------------------------------------------------------------------------------------


def plot_cka(analysis: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Linear CKA heatmaps: each set's layers against themselves, and the two sets' layers
    against each other when two sets were analysed. Colour scale fixed to [0, 1]."""
    cka = analysis["cka"]
    sets = analysis["sets"]
    panels = [(s["key"], s["layers"], s["layers"], cka["within"][s["key"]]) for s in sets]
    if cka.get("between"):
        panels.append((f"{sets[0]['key']} (rows) vs {sets[1]['key']} (columns)",
                       sets[0]["layers"], sets[1]["layers"], cka["between"]["values"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 0.8, 4.0), squeeze=False)
    image = None
    for ax, (title, rows, cols, values) in zip(axes[0], panels):
        image = ax.imshow(_finite_matrix(values), vmin=0.0, vmax=1.0, cmap="viridis",
                          origin="lower", aspect="auto")
        ax.set_title(_short(title, 44), fontsize=9)
        ax.set_xlabel("layer")
        ax.set_ylabel("layer")
        for axis, labels in ((ax.xaxis, cols), (ax.yaxis, rows)):
            step = max(1, len(labels) // 8)
            axis.set_ticks(range(0, len(labels), step))
            axis.set_ticklabels([str(v) for v in labels[::step]])
    fig.colorbar(image, ax=list(axes[0]), shrink=0.85, label="linear CKA")
    fig.suptitle(f"Layer similarity (linear CKA, {cka['n_clips']} clips, "
                 f"{analysis['pooling']} pooling)", fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    fig.savefig(tmp, dpi=DPI, format="png")  # no tight_layout: it fights the shared colour bar
    plt.close(fig)
    os.replace(tmp, path)
    return path


def _finite_matrix(values: Sequence[Sequence[Any]]) -> np.ndarray:
    return np.array([[np.nan if v is None else float(v) for v in row] for row in values])


def plot_cca_layers(analysis: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Held-out mean canonical correlation with the acoustic set against layer, one line per
    SSL set with its CI band; and, for eGeMAPS, a layers x descriptor-groups heatmap per set."""
    studies = analysis["cca"]
    with_groups = [c for c in studies if c["groups"]]
    fig, axes = plt.subplots(1, 1 + len(with_groups), squeeze=False,
                             figsize=(5.2 + 4.6 * len(with_groups), 3.8))
    ax = axes[0][0]
    for i, c in enumerate(studies):
        layers = [r["layer"] for r in c["per_layer"]]
        colour = PALETTE[i % len(PALETTE)]
        ax.plot(layers, [r["mean_cc"] for r in c["per_layer"]], marker="o", ms=3, color=colour,
                label=_short(c["set"], 34))
        ax.fill_between(layers, [r["ci"][0] for r in c["per_layer"]],
                        [r["ci"][1] for r in c["per_layer"]], color=colour, alpha=0.2, lw=0)
    ax.set_xlabel("layer")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel("held-out mean canonical corr.")
    ax.set_title(f"CCA with {_short(studies[0]['acoustic'], 30)}", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    _style(ax)
    for ax, c in zip(axes[0][1:], with_groups):
        groups = list(c["groups"])
        values = np.array([[r["groups"][g] for g in groups] for r in c["per_layer"]])
        image = ax.imshow(values.T, vmin=0.0, vmax=1.0, cmap="magma", aspect="auto",
                          origin="lower")
        ax.set_yticks(range(len(groups)))
        ax.set_yticklabels(groups, fontsize=7)
        layers = [r["layer"] for r in c["per_layer"]]
        step = max(1, len(layers) // 8)
        ax.set_xticks(range(0, len(layers), step))
        ax.set_xticklabels([str(v) for v in layers[::step]])
        ax.set_xlabel("layer")
        ax.set_title(f"first held-out canonical corr. per descriptor group\n{_short(c['set'], 40)}",
                     fontsize=8)
        fig.colorbar(image, ax=ax, shrink=0.85)
    return _save(fig, path)
