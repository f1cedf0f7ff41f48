"""``recipes``: list the reproduced systems, the paper of each (authors, title, venue, arXiv id /
DOI), the table reproduced, the numbers it published and the ``extract`` / ``train`` (or, for a
recipe of the fine-tune stage, ``finetune``) commands."""
from __future__ import annotations

import argparse

from cli.common import EXIT_OK, UsageError, say


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "recipes", help="list the recipes (reproduced systems) with their papers and published numbers",
        description="Every recipes/NAME.toml: the paper (authors, title, venue, arXiv id or DOI) "
                    "and the table it reproduces, the published numbers (labelled as published: "
                    "not measured here) and what `train --recipe NAME` runs. NAME also prints "
                    "the `extract` command of the features it needs. --fidelity NAME prints the "
                    "paper beside our settings, detail by detail.")
    p.add_argument("name", nargs="?", metavar="NAME",
                   help="show one recipe in full (description, training settings, the extract and "
                        "train commands)")
    p.add_argument("--workdir", metavar="DIR",
                   help="with NAME: write the commands for this workdir (its recorded corpus "
                        "root, layout and label table; default placeholders ROOT and WORKDIR)")
    p.add_argument("--fidelity", action="store_true",
                   help="print the fidelity table (the paper's words, our value, match / option / "
                        "differs / not stated); without NAME, the counts of every recipe")
    p.set_defaults(func=run)


def _print_fidelity(r, full: bool) -> None:
    f = r.fidelity
    if f is None:
        say(f"{r.name}: no [fidelity] table")
        return
    counts = ", ".join(f"{n} {k}" for k, n in f.counts().items())
    if not full:
        say(f"{r.name:28s} {counts}")
        return
    say(f"{r.name}: {f.citation()}")
    say(f"  reproduces {f.table} ({f.file})")
    for row in f.rows:
        say(f"  [{row.kind}] {row.aspect}: {row.detail}")
        say(f"      paper:  {row.quote}" + ("" if row.quote == "not stated" else f"  ({row.source})"))
        say(f"      ours:   {row.ours}")
        if row.kind in ("option", "differs"):
            say(f"      why:    {row.status.split(':', 1)[1].strip()}")
    say(f"  {counts}")


def run(args: argparse.Namespace) -> int:
    from heads.recipes import RecipeError, list_recipes, load_recipe

    name = getattr(args, "name", None)
    try:
        recipes = [load_recipe(name)] if name else list_recipes()
    except RecipeError as exc:
        raise UsageError(str(exc)) from exc
    if getattr(args, "fidelity", False):
        for r in recipes:
            _print_fidelity(r, full=bool(name))
        return EXIT_OK
    if getattr(args, "workdir", None) and not name:
        raise UsageError("--workdir goes with a recipe NAME: `recipes NAME --workdir DIR`")
    for r in recipes:
        layer = f" layer {r.layer}" if r.layer is not None else ""
        say(f"{r.name}")
        say(f"  paper:      {r.citation()}")
        say(f"  reproduces: {r.table}")
        for pub in r.reproduces:
            say(f"    published {pub.text()}")
        if r.stage == "finetune":
            protocol, val = r.fold_protocol()
            ft = r.finetune
            aux = "".join([f", ctc {ft['ctc']:g}" if ft.get("ctc") else "",
                           f", adversary {ft['adversary']} {ft.get('adversary_mode', 'reverse')}"
                           if ft.get("adversary") else ""])
            fold = f", fold {protocol} (Val: {val})" if protocol else ""
            say(f"  runs:       finetune (end to end) of {', '.join(r.features)}, task {r.task}{aux}{fold}")
        else:
            say(f"  runs:       {r.head} on {', '.join(r.features)}{layer}, task {r.task}, {r.seeds} seed(s)")
        if name:
            workdir = getattr(args, "workdir", None)
            try:
                commands = r.extract_commands(workdir)
            except ValueError as exc:  # a damaged corpus.json: the message says what to do
                raise UsageError(str(exc)) from exc
            corpus = {"avb": "A-VB 2022", "exvo": "ExVo 2022", "iemocap": "IEMOCAP"}.get(
                r.layout, "the paper's")
            if r.stage == "finetune":
                say(f"  extract:    records the corpus ({corpus}, layout {r.layout or '?'}) and "
                    "stores the base model's embeddings:")
            else:
                say(f"  extract:    the features it reads ({corpus} corpus, layout {r.layout or '?'}):")
            for cmd in commands:
                say(f"    {cmd}")
            if r.stage == "finetune":
                say(f"  finetune:   python run_pipeline.py finetune --workdir {workdir or 'WORKDIR'} "
                    f"--recipe {r.name}")
            else:
                say(f"  train:      python run_pipeline.py train --workdir {workdir or 'WORKDIR'} "
                    f"--recipe {r.name}")
            say(f"  about:      {r.description}")
            settings = r.finetune if r.stage == "finetune" else r.options
            for key, value in sorted(settings.items()):
                say(f"    {key} = {value}")
            if r.fidelity is not None:
                say(f"  fidelity:   {', '.join(f'{n} {k}' for k, n in r.fidelity.counts().items())} "
                    f"(`recipes --fidelity {r.name}`)")
            say(f"  file:       {r.path}")
    if not name:
        say(f"{len(recipes)} recipes; train one with "
            "`python run_pipeline.py train --workdir DIR --recipe NAME` (those of the fine-tune "
            "stage: `python run_pipeline.py finetune --workdir DIR --recipe NAME`)")
    return EXIT_OK
