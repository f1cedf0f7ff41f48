"""``analyze``: training-free layer analysis of stored SSL sets (linear CKA, CCA with acoustics)."""
from __future__ import annotations

import argparse
import math

from cli.common import EXIT_OK, UsageError, add_workdir, say, step_progress


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze", help="training-free layer analysis: linear CKA between layers and models, "
                        "CCA of each layer with openSMILE functionals",
        description="Reads stored sets only (nothing is extracted or trained). Linear CKA "
                    "between every pair of layers of --features and, with --against, between "
                    "the layers of the two sets (same clips). With --acoustic, regularised CCA "
                    "between each layer and the functionals: fitted on Train and scored on Val "
                    "(held-out canonical correlations; a seeded 70/30 division when the corpus "
                    "has no split), with percentile-bootstrap CIs over the held-out clips, and "
                    "for eGeMAPS the descriptor group each layer explains best. Writes "
                    "WORKDIR/analyses/<name>/analysis.json, cca_<set>.csv, cka.png, cca.png; "
                    "`report` shows them.")
    add_workdir(p)
    p.add_argument("--features", required=True, metavar="SPEC|KEY",
                   help="an ssl: feature set (spec, name or key as shown by `list`)")
    p.add_argument("--against", metavar="SPEC|KEY",
                   help="a second ssl: set: CKA between the two models' layers")
    p.add_argument("--acoustic", metavar="SPEC|KEY",
                   help="an openSMILE functionals set for CCA, e.g. opensmile:eGeMAPSv02")
    p.add_argument("--pooling", default="mean", help="pooled field of the SSL sets (default mean)")
    p.add_argument("--max-clips", type=int, default=2000,
                   help="most clips in the CKA, a seeded random subsample (default 2000)")
    p.add_argument("--cca-reg", default="auto",
                   help="CCA covariance shrinkage towards the identity, in [0, 1), or 'auto' "
                        "(default): chosen per layer by 5-fold cross-validation on the fitting "
                        "clips")
    p.add_argument("--cca-pca", type=int, default=64,
                   help="principal components of each layer kept before CCA; 0 keeps all "
                        "(default 64)")
    p.add_argument("--cca-components", type=int, default=10,
                   help="canonical pairs averaged into the mean canonical correlation (default 10)")
    p.add_argument("--n-boot", type=int, default=1000,
                   help="bootstrap resamples of the held-out clips (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="subsample / division / bootstrap seed")
    p.add_argument("--name", help="folder name under WORKDIR/analyses (default: sets + time)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from heads.analysis.study import AnalyzeConfig, run_analysis
    from heads.features import FeatureError
    from reports.plots import plot_cca_layers, plot_cka

    if args.cca_reg == "auto":
        reg = None
    else:
        try:
            reg = float(args.cca_reg)
        except ValueError:
            raise UsageError(f"--cca-reg must be a number in [0, 1) or 'auto', got "
                             f"{args.cca_reg!r}") from None
    cfg = AnalyzeConfig(workdir=args.workdir, features=args.features, against=args.against,
                        acoustic=args.acoustic, pooling=args.pooling, max_clips=args.max_clips,
                        reg=reg, pca_dims=args.cca_pca or None,
                        n_components=args.cca_components, n_boot=args.n_boot, seed=args.seed,
                        name=args.name)
    try:
        result = run_analysis(cfg, progress=step_progress("analyze", "layer"))
    except (FeatureError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    s = result.summary
    figures = [plot_cka(s, result.folder / "cka.png")]
    if s["cca"]:
        figures.append(plot_cca_layers(s, result.folder / "cca.png"))
    _print(s)
    say(f"written to {result.folder} (analysis.json, "
        + ", ".join(f.name for f in figures) + f") in {s['seconds']:.1f} s")
    return EXIT_OK


def _f(x: float | None) -> str:
    return "nan" if x is None or not math.isfinite(x) else f"{x:.3f}"


def _print(s: dict) -> None:
    cka = s["cka"]
    say(f"linear CKA over {cka['n_clips']} clips ({cka['clips']}), {s['pooling']} pooling")
    for meta in s["sets"]:
        within = cka["within"][meta["key"]]
        adjacent = [within[i][i + 1] for i in range(len(within) - 1)]
        say(f"  {meta['key']}: {len(meta['layers'])} layers; CKA of neighbouring layers "
            f"{_f(min(adjacent, default=float('nan')))} to {_f(max(adjacent, default=float('nan')))}; "
            f"first vs last {_f(within[0][-1])}")
    if cka.get("between"):
        rows = s["sets"][0]["layers"]
        cols = s["sets"][1]["layers"]
        say(f"  most similar layer of {s['sets'][1]['key']} for each layer of {s['sets'][0]['key']}:")
        for layer, values in zip(rows, cka["between"]["values"]):
            finite = [(v, c) for v, c in zip(values, cols) if v is not None and math.isfinite(v)]
            if finite:
                v, c = max(finite)
                say(f"    layer {layer:>3} -> layer {c:>3} (CKA {_f(v)})")
    level = round(100 * s["ci_level"])
    for c in s["cca"]:
        say(f"CCA of {c['set']} with {c['acoustic']}: {c['division']} "
            f"({c['n_fit']} / {c['n_held_out']} clips)")
        say(f"  layer  mean cc  {level}% CI            first cc  shrinkage  best descriptor group")
        for r in c["per_layer"]:
            best = r.get("best_group")
            group = f"{best} ({_f(r['groups'][best])})" if best else "-"
            mark = "*" if r["layer"] == c["best_layer"] and c["best_separated"] else " "
            say(f"  {r['layer']:>5}  {_f(r['mean_cc'])}{mark}  [{_f(r['ci'][0])}, {_f(r['ci'][1])}]"
                f"    {_f(r['first_cc'])}    {r['reg']:<9g}  {group}")
        if c["best_layer"] is not None:
            say(f"  highest: layer {c['best_layer']}" + (
                f" (*: its {level}% CI lies above every other layer's)" if c["best_separated"]
                else f" (not starred: its {level}% CI overlaps the runner-up's)"))
