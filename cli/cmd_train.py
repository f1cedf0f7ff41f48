"""``train``: fit a head on cached features, select on Val, write a run directory."""
from __future__ import annotations

import argparse
import logging
from typing import Any

from cli.common import (EXIT_OK, UsageError, add_auxiliary_flags, add_fold_flags, add_workdir,
                        fold_protocol, say)
from extract.devices import DEVICES
from heads.aux_metrics import OLDER_TEXT, older_layout, run_aux
from heads.aux_metrics import SPLITS as AUX_SPLITS
from heads.aux_metrics import quantities as aux_quantities
from heads.config import STOP_ON, TRAIN_OPTION_NAMES
from heads.catalog import head_help

log = logging.getLogger(__name__)

# TrainOptions fields with a flag of their own (torch heads only); validated there. The fields
# set only in a recipe (booleans, memory limit) and the --net table have no such flag.
RECIPE_ONLY_OPTIONS = ("class_weights", "separate", "restore_best", "max_memory_gb", "net")
TORCH_OPTIONS = tuple(f for f in TRAIN_OPTION_NAMES if f not in RECIPE_ONLY_OPTIONS)
EXPERIMENT_FLAGS = ("task", "features", "head", "layer", "pooling", "seeds")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a head on cached features (fit on Train, select on Val)",
        description="Fits on Train, selects hyper-parameters (classical heads) or the epoch (torch "
                    "heads) on Val, reports Val scores with a bootstrap 95 % CI and writes Test "
                    "predictions in the challenge submission format to WORKDIR/runs/<run-name>/. "
                    "With --recipe NAME the settings come from recipes/NAME.toml (see `recipes`); "
                    "flags given explicitly override them.")
    add_workdir(p)
    p.add_argument("--recipe", metavar="NAME",
                   help="run a reproduced system: recipes/NAME.toml (or a path to a .toml file) "
                        "gives task, features, head, layer, pooling, seeds and training options")
    p.add_argument("--task", metavar="TASK[,TASK..]",
                   help="avb-high, avb-two, avb-culture, avb-type, country, exvo; for csv corpora "
                        "regress:COL[,COL..] or classify:COL; several tasks separated by commas "
                        "(torch heads train one multitask model); required without --recipe")
    p.add_argument("--features", nargs="+", metavar="SPEC|KEY",
                   help="feature sets to use (concatenated): spec, name or key as shown by `list`")
    p.add_argument("--head", metavar="HEAD", help=head_help())  # checked by the registry: exit 2
    p.add_argument("--layer", type=int, help="SSL hidden-state index (default: the last stored)")
    p.add_argument("--pooling", help="SSL pooling of the vector features (default: mean)")
    p.add_argument("--seeds", type=int, help="number of seeds; mean and std are reported (default: 1)")
    p.add_argument("--n-boot", type=int, default=500, help="bootstrap resamples for the Val CI")
    p.add_argument("--run-name", help="folder name under WORKDIR/runs (default: settings + time)")
    p.add_argument("--jobs", type=int, default=1, help="CPU threads for heads that use them")
    add_fold_flags(p, description="one run per fold (WORKDIR/runs/<run-name>/<fold>/), then the "
                   "scores over folds (mean ± std, and pooled over every fold's Test predictions) "
                   "in cv.json / cv.csv", cv_val_default="partner")

    g = p.add_argument_group("torch heads", "training options of the torch heads (heads/training/)")
    g.add_argument("--weighting", metavar="SPEC",
                   help="multitask loss weighting: equal (default), fixed:W1,W2,.. (one per target), "
                        "uw, exvo, ruw, rruw, dwa[:T=10], druw[:T=10,phi=1]")
    g.add_argument("--loss", metavar="SPEC",
                   help="regression loss: ccc (default), mse or mae, plus TARGET=LOSS items, e.g. "
                        "ccc,age=mse; MAE-scored targets (age) default to mae; classes use "
                        "cross-entropy")
    g.add_argument("--output", metavar="MODE",
                   help="regression output: sigmoid, clamp, clamp-st or linear (default: the head's)")
    g.add_argument("--chain", metavar="TASK[,TASK..]",
                   help="intermediate tasks (mlp-mtl), predicted first and fed to the others, "
                        "e.g. country,type")
    g.add_argument("--unscaled", metavar="TARGET[,TARGET..]",
                   help="regression targets trained in their own units, not scaled to [0, 1] "
                        "(e.g. age for an MSE in years; needs --output linear)")
    g.add_argument("--epochs", type=int, help="maximum epochs (default: 30)")
    g.add_argument("--lr", type=float, help="learning rate (default: 1e-3)")
    g.add_argument("--weight-decay", type=float, help="weight decay (default: 0)")
    g.add_argument("--optimizer", metavar="NAME", help="adam (default) or adamw")
    g.add_argument("--batch-size", type=int, help="clips per step (default: 32)")
    g.add_argument("--patience", type=int,
                   help="stop after this many epochs without a better Val score; 0: never "
                        "(default: 5); the best epoch's state is kept")
    g.add_argument("--stop-on", choices=STOP_ON,
                   help="what picks the best epoch and stops early: score (default: the mean "
                        "Val headline) or loss (the Val loss, as the ExVo baseline)")
    g.add_argument("--schedule", metavar="NAME", help="learning-rate schedule: none (default) or cosine")
    g.add_argument("--warmup", type=float, help="epochs of linear learning-rate warm-up (default: 0)")
    g.add_argument("--label-smoothing", type=float, help="cross-entropy label smoothing (default: 0)")
    g.add_argument("--frames-field", metavar="FIELD",
                   help="frame sequences a sequence head reads: frames_l12 (SSL, stored with "
                        "extract --frames-layers), logmel, lld (default: frames_l<layer>)")
    g.add_argument("--device", metavar="DEV",
                   help=f"{', '.join(DEVICES)} (default: auto, CUDA when present)")
    g.add_argument("--net", action="append", metavar="KEY=VALUE", default=None,
                   help="a setting of the net's config, e.g. --net pooling=last --net hidden=256 "
                        "(repeatable)")
    add_auxiliary_flags(
        p, title="auxiliary heads (paper 004)",
        description="extra heads on the torch net's shared representation; the loss is L = "
                    "L_task + alpha L_CTC + beta L_speaker; metrics.json gains adversary / ctc",
        adversary_on="the net's shared representation",
        adversary_reports=" and a probe of the speaker information left",
        ctc_on="the net's frames",
        ctc_needs="needs the corpus's text column and a sequence head with frames (lstm, "
                  "lstm128, fc128 --net order=fc-pool, autopool --net pool=outputs)")
    p.set_defaults(func=run)


def _scalar(text: str) -> Any:
    """``--net`` value: int, float, true/false, or the text."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _net_options(items: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--net takes KEY=VALUE, got {item!r}")
        out[key.strip()] = _scalar(value)
    return out


def _config(args: argparse.Namespace):
    """The checked experiment config from the flags (and the recipe, when given), and the
    recipe with what of it applies (None without one).

    Raises:
        UsageError: missing or conflicting flags, unknown recipe, bad option values.
        ValueError, heads.features.FeatureError: what :func:`heads.experiment.check_config`
            refuses (the caller maps them to exit 2).
    """
    from heads.experiment import build_config, check_config

    options = {k: getattr(args, k) for k in TORCH_OPTIONS if getattr(args, k, None) is not None}
    net = _net_options(getattr(args, "net", None))
    recipe_name = getattr(args, "recipe", None)
    if recipe_name:
        from heads.recipes import RecipeError, load_recipe

        try:
            recipe = load_recipe(recipe_name)
            if net:
                options["net"] = {**recipe.options.get("net", {}), **net}
            exp = {k: getattr(args, k) for k in EXPERIMENT_FLAGS if getattr(args, k, None) is not None}
            if "features" in exp:
                exp["features"] = tuple(exp["features"])
            cfg = recipe.experiment_config(args.workdir, run_name=args.run_name,
                                           n_boot=args.n_boot, n_jobs=args.jobs, **exp, **options)
            use = recipe.reuse(exp.get("task"), given=options)
        except (RecipeError, ValueError) as exc:
            raise UsageError(str(exc)) from exc
        return check_config(cfg), (recipe, use)
    if not args.task:
        raise UsageError("train needs --task (or --recipe NAME)")
    if not args.features or not args.head:
        raise UsageError("train needs --features and --head (or --recipe NAME)")
    if net:
        options["net"] = net
    cfg = build_config(args.workdir, task=args.task, features=args.features, head=args.head,
                       layer=args.layer, pooling=args.pooling or "mean",
                       seeds=args.seeds if args.seeds is not None else 1, n_boot=args.n_boot,
                       run_name=args.run_name, n_jobs=args.jobs, options=options)
    return cfg, None


def run(args: argparse.Namespace) -> int:
    from data.corpus import CorpusError
    from data.tasks import TaskError
    from heads.experiment import run_experiment
    from heads.features import FeatureError

    try:
        cfg, recipe_use = _config(args)
        if recipe_use is not None and recipe_use[1].dropped:
            recipe, use = recipe_use
            say(f"recipe {recipe.name} on --task {use.task} (its own: {recipe.task}); "
                "no longer applies:")
            for line in use.dropped:
                say(f"  {line}")
        record = None if recipe_use is None else recipe_use[0].run_record(recipe_use[1])
        protocol = fold_protocol(args)
        if protocol is not None:
            from heads.crossval import run_cross_validation

            study = run_cross_validation(
                cfg, protocol, val=args.cv_val, recipe=record,
                on_fold=lambda i, n, f: say(f"fold {i + 1}/{n} {f.name}: "
                                            + ", ".join(f"{k} {v}" for k, v in f.counts().items())))
            print_cv(study.summary, study.folder)
            for fold, res in study.folds:  # the auxiliary heads' numbers, fold by fold
                for line in auxiliary_lines(res.metrics):
                    say(f"{fold.name}: {line}")
            return EXIT_OK
        result = run_experiment(cfg, recipe=record)
    except (FeatureError, TaskError, CorpusError, FileNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    print_result(result.metrics, result.run_dir)
    if recipe_use is not None:
        recipe, use = recipe_use
        say(f"recipe {recipe.name}: {recipe.citation()}, {recipe.table}")
        for pub in use.published:
            say(f"  published {pub.text()}")
        if not use.same_task:
            say(f"  published numbers not shown: they are for {recipe.task}")
    return EXIT_OK


def print_cv(summary: dict, folder) -> None:
    """Per task and split: the headline per fold, mean ± std over folds, and for classification
    targets WA / UA / macro-F1 over folds and pooled; the auxiliary heads over folds."""
    names = [f["name"] for f in summary["folds"]]
    say(f"{len(names)} fold(s) of {summary['protocol']} (Val: {summary['val_rule']}): "
        + ", ".join(names))
    for task, entry in summary["tasks"].items():
        for split, block in entry.items():
            s = block["score"]
            folds = ", ".join(f"{x:.4f}" for x in s["folds"])
            say(f"{task}: {split.capitalize()} {block['metric']} = {s['mean']:.4f} ± {s['std']:.4f} "
                f"(mean ± std over {len(s['folds'])} folds: {folds})")
            for tg, t in block.get("targets", {}).items():
                p = t["pooled"]
                say(f"  {tg}: WA {t['wa']['mean']:.4f} ± {t['wa']['std']:.4f}, UA "
                    f"{t['uar']['mean']:.4f} ± {t['uar']['std']:.4f}, macro-F1 "
                    f"{t['macro_f1']['mean']:.4f} ± {t['macro_f1']['std']:.4f} (over folds); "
                    f"pooled over {p['n']} clips: WA {p['wa']:.4f}, UA {p['uar']:.4f}, "
                    f"macro-F1 {p['macro_f1']:.4f}")
    for head, split, q, st in aux_quantities(summary.get("aux") or {}):
        folds = ", ".join(f"{x:.4f}" for x in st["folds"])
        say(f"{head}: {split.capitalize()} {q} = {st['mean']:.4f} ± {st['std']:.4f} "
            f"(mean ± std over {len(st['folds'])} folds: {folds})")
    say(f"written to {folder} (cv.json, cv.csv; one run folder per fold)")


def _split_line(task: str, split: str, v: dict, n_text: str) -> str:
    """``TASK: Val ccc = 0.8123 ± 0.0040 (mean ± std over 3 seeds; ...)``: what each number is."""
    seeds = len(v.get("seed_scores") or [0])
    std = f" ± {v['score_std']:.4f}" if seeds > 1 else ""
    parts = [f"mean ± std over {seeds} seeds"] if seeds > 1 else []
    ci = v.get("ci")
    if ci is not None:
        of = " of the seed mean" if seeds > 1 else ""
        parts.append(f"95% CI{of} {ci[0]:.4f} to {ci[1]:.4f}")
    parts.append(n_text)
    return f"{task}: {split} {v['metric']} = {v['score']:.4f}{std} ({', '.join(parts)})"


def _target_lines(v: dict) -> list[str]:
    """Per target: its score; for classes WA, UAR, macro-F1 and the per-class recall table."""
    lines = []
    targets = v.get("targets", {})
    seeds = len(v.get("seed_scores") or [0])
    of = f" (seed {v.get('targets_seed')}, the median one)" if seeds > 1 else ""
    for tname, t in targets.items():
        if t.get("metric") == "uar" and "wa" in t:
            lines.append(f"  {tname}: UAR {t['uar']:.4f}, WA {t['wa']:.4f}, macro-F1 "
                         f"{t['macro_f1']:.4f}{of}")
            width = max((len(str(c)) for c in t["per_class_recall"]), default=5)
            lines.append(f"    {'class':<{width}}  recall  support")
            for c, r in t["per_class_recall"].items():
                lines.append(f"    {str(c):<{width}}  {r:6.4f}  {t['support'][c]:7d}")
        elif len(targets) > 1:
            lines.append(f"  {tname}: {t['metric']} = {t['score']:.4f}{of}")
    return lines


def print_result(metrics: dict, run_dir) -> None:
    for task, entry in metrics["tasks"].items():
        v = entry["val"]
        scored = [t["n"] for t in v.get("targets", {}).values() if "n" in t]
        n = f"n={v.get('n')}"
        if scored and min(scored) != v.get("n"):  # clips without a (finite) label are not scored
            n = f"n={min(scored)} of {v.get('n')} Val clips; the others have no label"
        say(_split_line(task, "Val", v, n))
        for line in _target_lines(v):
            say(line)
        test = entry.get("test")
        if test is not None:
            scored = [t["n"] for t in test.get("targets", {}).values() if "n" in t]
            say(_split_line(task, "Test", test, f"n={min(scored) if scored else test.get('n')}"))
            for line in _target_lines(test):
                say(line)
        for tname, c in entry.get("clipping", {}).items():
            if not any(c["clipped"].get(s) for s in ("Val", "Test")):
                continue
            low, high = c["range"]
            counts = ", ".join(f"{s} {c['clipped'][s]} of {c['values'][s]}"
                               for s in ("Val", "Test") if c["values"].get(s))
            say(f"  {tname}: predictions clipped to the label range [{low:g}, {high:g}] "
                f"({counts} values); selection and scores use the clipped values")
        if len(v.get("seed_scores") or []) > 1:
            say(f"  predictions written from seed {entry.get('predictions_seed')} (the median "
                f"Val score)")
    for line in auxiliary_lines(metrics):
        say(line)
    say(f"run written to {run_dir}")


def auxiliary_lines(metrics: dict) -> list[str]:
    """The auxiliary heads of one run's metrics.json (``train`` or ``finetune``, the layout of
    :mod:`heads.aux_metrics`): the adversary's speaker accuracies, the speaker probe and the CTC
    head's WER / CER, each saying what it is."""
    if older_layout(metrics):
        return [f"auxiliary heads: {OLDER_TEXT}"]
    aux = run_aux(metrics)
    lines = []
    adv, probe, ctc = aux.get("adversary"), aux.get("speaker_probe"), aux.get("ctc")
    if adv is not None:
        st = adv["settings"]
        col = st["column"]
        acc = ", ".join(f"{s.capitalize()} {b['speaker_accuracy']:.4f} (n={b['n']})"
                        if b["speaker_accuracy"] is not None
                        else f"{s.capitalize()} - (no Train {col} there)"
                        for s in AUX_SPLITS if (b := adv.get(s)) is not None)
        lines.append(f"adversary {col} (beta {st['beta']:g}, {st['mode']}): {col} accuracy of "
                     f"the adversary {acc}; chance {st['chance']:.4f}")
    if probe is not None and (p := probe.get("train")) and p["speaker_accuracy"] is not None:
        col = probe["settings"]["column"]
        lines.append(f"  {col} information left: a fresh linear probe on "
                     f"{probe['settings']['representation']} gets {p['speaker_accuracy']:.4f} on "
                     f"{p['n']} held-out Train clips (majority {p['majority_accuracy']:.4f})")
    if ctc is not None:
        st = ctc["settings"]
        parts = [f"{s.capitalize()} WER {b['wer_error']:.4f}, CER {b['cer_error']:.4f} (n={b['n']})"
                 for s in ("val", "test") if (b := ctc.get(s)) and b.get("n")]
        lines.append(f"ctc (alpha {st['alpha']:g}, {st['vocab_size']} symbols in "
                     f"{st['vocab_file']}): " + ("; ".join(parts) or "no Val/Test transcript"))
    return lines
