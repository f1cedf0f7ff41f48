"""``recipes``: list the reproduced systems, the paper of each and the numbers it published."""
from __future__ import annotations

import argparse

from cli.common import EXIT_OK, UsageError, say


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "recipes", help="list the recipes (reproduced systems) with their papers and published numbers",
        description="Every recipes/NAME.toml: the paper and table it reproduces, the published numbers "
                    "(labelled as published: not measured here) and what `train --recipe NAME` runs.")
    p.add_argument("name", nargs="?", metavar="NAME",
                   help="show one recipe in full (description and training settings)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from heads.recipes import RecipeError, list_recipes, load_recipe

    try:
        recipes = [load_recipe(args.name)] if getattr(args, "name", None) else list_recipes()
    except RecipeError as exc:
        raise UsageError(str(exc)) from exc
    for r in recipes:
        layer = f" layer {r.layer}" if r.layer is not None else ""
        say(f"{r.name}")
        say(f"  paper:      {r.paper}")
        say(f"  reproduces: {r.table}")
        for pub in r.reproduces:
            say(f"    published {pub.text()}")
        say(f"  runs:       {r.head} on {', '.join(r.features)}{layer}, task {r.task}, {r.seeds} seed(s)")
        if getattr(args, "name", None):
            say(f"  about:      {r.description}")
            for key, value in sorted(r.options.items()):
                say(f"    {key} = {value}")
            say(f"  file:       {r.path}")
    if not getattr(args, "name", None):
        say(f"{len(recipes)} recipes; train one with "
            "`python run_pipeline.py train --workdir DIR --recipe NAME`")
    return EXIT_OK
