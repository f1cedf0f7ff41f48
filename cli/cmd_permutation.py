"""``permutation``: the task-relationship permutation study of seed 001."""
from __future__ import annotations

import argparse
import math

from cli.common import EXIT_OK, UsageError, add_workdir, say


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "permutation", help="permutation study: true vs shuffled vs wrong auxiliary labels",
        description="Concatenates auxiliary labels (country one-hot, age) to one SSL layer's "
                    "features and trains a head on the task with no, true, shuffled and "
                    "deliberately wrong auxiliary labels, --trials times each (Belanich et al.: "
                    "country and age shuffled across the Train clips with an independent "
                    "permutation each, or a wrong country and age for every Train clip; Val "
                    "unaltered). The head: --recipe NAME (its torch head and training options, "
                    "trained anew per trial with seed --seed + trial) or --head. A sequence "
                    "head (--recipe conformer-mean3 and the other conformer-* recipes: the "
                    "paper's Conformer heads) reads the stored frames (the recipe's "
                    "frames_field, or frames_l<--layer>) with the auxiliary labels appended to "
                    "every frame, as the paper's 'concatenated to the input Conformer "
                    "features'; a vector head reads the pooled vector plus the labels. "
                    "--head ridge is the fast option, not the paper's model: a closed-form "
                    "fit whose trial-to-trial variation comes from a bootstrap resample of "
                    "Train. Conditions are compared with Student "
                    "two-sample t-tests (scipy.stats.ttest_ind, equal_var=True; --welch: "
                    "Welch's). Writes WORKDIR/permutation/<name>/permutation.json, scores.csv, "
                    "tests.csv and permutation.png (score densities). Cached features only.")
    add_workdir(p)
    p.add_argument("--features", required=True, metavar="SPEC|KEY", help="an ssl: feature set")
    p.add_argument("--task", default="avb-high",
                   help="task predicted (default avb-high); must not be country or age itself")
    p.add_argument("--layer", type=int, help="SSL layer (default: the last stored; a sequence "
                                             "head reads frames_l<LAYER>)")
    p.add_argument("--pooling", default="mean",
                   help="SSL pooling of a vector head's input (default: mean; a sequence head "
                        "pools the frames itself)")
    p.add_argument("--aux", default="country,age", help="auxiliary labels (default: country,age)")
    p.add_argument("--conditions", default="none,true,shuffled,wrong",
                   help="conditions (default: none,true,shuffled,wrong)")
    p.add_argument("--trials", type=int, default=50, help="trials per condition (default: 50)")
    p.add_argument("--eval-aux", choices=("same", "true"), default="true",
                   help="auxiliary labels seen on Val/Test: the true ones (true, default: only "
                        "Train is manipulated, as the paper) or the condition's (same)")
    p.add_argument("--recipe", metavar="NAME",
                   help="train this recipe's head with its [train] options in every trial (a "
                        "torch head on frame sequences, e.g. conformer-mean3, the paper's model "
                        "on the wav2vec2-base stand-in, or on vectors, e.g. exvo-baseline-egemaps)")
    p.add_argument("--head", help="the head (give --recipe or --head): ridge (the fast option, "
                                  "bootstrap trials, not the paper's model), a torch vector head "
                                  "(mlp-avb, mlp-mtl) or one of the paper's Conformer sequence "
                                  "heads (mean3, autopool, fc128, lstm128, netvlad)")
    p.add_argument("--epochs", type=int, help="torch head: epochs per trial (overrides the recipe)")
    p.add_argument("--welch", action="store_true",
                   help="Welch's unequal-variance t-test instead of Student's (the paper's)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default: 0)")
    p.add_argument("--name", help="folder name under WORKDIR/permutation")
    p.add_argument("--jobs", type=int, default=1, help="BLAS threads (default: 1)")
    p.set_defaults(func=run)


def _choose_model(args: argparse.Namespace) -> str:
    """The refusal of a study without its model, with the two commands that name one."""
    from data.hints import command

    same = ["--workdir", args.workdir, "--features", args.features]
    if args.task != "avb-high":
        same += ["--task", args.task]
    if args.layer is not None:
        same += ["--layer", args.layer]
    return ("the permutation study needs its model: the paper's, a Conformer head retrained per "
            "trial on the stored layer frames (--recipe conformer-mean3), or the fast option, "
            "ridge on the pooled vector with bootstrap trials, which is not the paper's model "
            "(--head ridge). Run one of:\n  "
            + command("permutation", *same, "--recipe", "conformer-mean3") + "\n  "
            + command("permutation", *same, "--head", "ridge"))


def _items(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def run(args: argparse.Namespace) -> int:
    from data.corpus import CorpusError
    from data.tasks import TaskError
    from heads.features import FeatureError
    from heads.permutation import PermutationConfig, run_permutation
    from reports.plots import plot_permutation_density

    if not args.head and not args.recipe:
        raise UsageError(_choose_model(args))
    head, options = args.head or "ridge", {}
    if args.recipe:
        from heads.recipes import RecipeError, load_recipe

        try:
            recipe = load_recipe(args.recipe)
        except RecipeError as exc:
            raise UsageError(str(exc)) from exc
        if recipe.stage != "train":
            raise UsageError(f"recipe {recipe.name} fine-tunes a backbone; the permutation study "
                             "trains a head on stored features: give a recipe with a [train] table")
        head = args.head or recipe.head
        use = recipe.reuse(args.task)  # what of the recipe applies to the study's task
        options = dict(use.options)
        frames = str(options.get("frames_field") or "")
        if args.layer is not None and frames.startswith("frames_l") and frames != f"frames_l{args.layer}":
            say(f"recipe {recipe.name}: frames_field {frames} -> frames_l{args.layer} (--layer)")
            options["frames_field"] = f"frames_l{args.layer}"
        for line in use.dropped:
            if not line.startswith(("published numbers", "run name")):
                say(f"recipe {recipe.name}: no longer applies: {line}")
    if args.epochs is not None:
        options["epochs"] = args.epochs
    if head == "ridge" and (args.epochs is not None):
        raise UsageError("--epochs trains a torch head; ridge has none: add --head mlp-avb or "
                         "--recipe NAME")
    cfg = PermutationConfig(workdir=args.workdir, features=args.features, task=args.task,
                            layer=args.layer, pooling=args.pooling, aux=_items(args.aux),
                            conditions=_items(args.conditions), trials=args.trials,
                            eval_aux=args.eval_aux, seed=args.seed, name=args.name,
                            n_jobs=args.jobs, head=head,
                            head_options=options if head != "ridge" else {},
                            recipe=args.recipe, welch=args.welch)
    try:
        result = run_permutation(cfg)
    except (FeatureError, TaskError, CorpusError, FileNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    s = result.summary
    plot = plot_permutation_density(s, result.study_dir / "permutation.png")
    say(f"{s['task']} from {s['feature_set']['name']}: {s['input']} ({', '.join(s['aux'])}); "
        f"{s['trials']} trials per condition; Val {s['metric']}:")
    for c, st in s["stats"].items():
        say(f"  {c:<9} {st['mean']:.4f} ± {st['std']:.4f}  (min {st['min']:.4f}, max {st['max']:.4f})")
    say(f"head: {s['head_text']}")
    say(f"{'Welch' if args.welch else 'Student'} two-sample t-tests (two-sided), head {s['head']}:")
    for t in s["tests"]:
        say(f"  {t['a']:>8} vs {t['b']:<8} diff {t['diff']:+.4f}  t = {_f(t['t'], 2)}  "
            f"p = {_p(t['p'])}  d = {_f(t['cohen_d'], 2)}")
    say(f"written to {result.study_dir} (permutation.json, scores.csv, tests.csv, {plot.name}) "
        f"in {s['seconds']:.1f} s")
    return EXIT_OK


def _f(x: float, digits: int) -> str:
    return "nan" if not math.isfinite(x) else f"{x:.{digits}f}"


def _p(p: float) -> str:
    return "nan" if not math.isfinite(p) else (f"{p:.2e}" if p < 1e-3 else f"{p:.4f}")
