"""Fidelity beside results: for every recipe a workdir's runs came from, how closely it follows
its paper (rows per status: match / option / differs / not stated, from the recipe's
``[fidelity]`` table) and each detail where it differs, with the reason the recipe gives.

The numbers come from the recipe files shipped now (:func:`heads.recipes.load_recipe`); a run
records only the recipe's name, so a recipe changed after the run is shown as it is today, and
one that no longer ships is named as such.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)


def load_fidelity(names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Recipe name -> its paper, counts per status and the option / differs rows (plain data)."""
    names = sorted(set(names))
    if not names:
        return {}
    from heads.recipes import RecipeError, load_recipe  # only when a run came from a recipe

    out: dict[str, dict[str, Any]] = {}
    for name in names:
        try:
            recipe = load_recipe(name)
        except RecipeError as exc:
            log.info("recipe %s of a run does not load now: %s", name, exc)
            out[name] = {"missing": str(exc)}
            continue
        fid = recipe.fidelity
        if fid is None:
            out[name] = {"paper": recipe.paper, "counts": None, "rows": []}
            continue
        out[name] = {"paper": fid.citation(), "table": fid.table, "counts": fid.counts(),
                     "rows": [{"kind": r.kind, "aspect": r.aspect, "detail": r.detail,
                               "quote": r.quote, "ours": r.ours,
                               "why": r.status.split(":", 1)[1].strip() if ":" in r.status else ""}
                              for r in fid.rows if r.kind in ("differs", "option")]}
    return out


def run_recipes(runs: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Run name -> the recipe it came from, for runs that record one."""
    return {r["name"]: r["metrics"]["recipe"]["name"] for r in runs
            if isinstance(r.get("metrics", {}).get("recipe"), dict)
            and r["metrics"]["recipe"].get("name")}


def fidelity_blocks(run_names: Iterable[str], runs: dict[str, dict[str, Any]],
                    fidelity: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Under a task's results table: one paragraph per recipe behind its rows, and a table of
    the details where the recipe differs from (or offers other readings of) its paper."""
    used: dict[str, list[str]] = {}
    for name in run_names:
        recipe = (runs.get(name, {}).get("metrics", {}).get("recipe") or {})
        if recipe.get("name"):
            used.setdefault(recipe["name"], []).append(name)
    b: list[dict[str, Any]] = []
    for recipe, names in sorted(used.items()):
        f = fidelity.get(recipe, {"missing": "not loaded"})
        who = ", ".join(f"`{n}`" for n in names)
        if "missing" in f:
            b.append({"kind": "p", "text": f"Fidelity of recipe `{recipe}` (runs {who}): the "
                                           f"recipe no longer ships here, so its fidelity to "
                                           f"its paper is unknown."})
            continue
        if f["counts"] is None:
            b.append({"kind": "p", "text": f"Fidelity of recipe `{recipe}` (runs {who}): it has "
                                           f"no [fidelity] table ({f['paper']})."})
            continue
        c = f["counts"]
        b.append({"kind": "p", "text":
                  f"**Fidelity of recipe `{recipe}`** (runs {who}) to {f['paper']}, "
                  f"{f['table']}: {c.get('match', 0)} details match, {c.get('option', 0)} are "
                  f"options, {c.get('differs', 0)} differ, {c.get('not stated', 0)} are not "
                  f"stated by the paper. Every row: `python run_pipeline.py recipes --fidelity "
                  f"{recipe}`."})
        if f["rows"]:
            b.append({"kind": "table", "headers": ["", "aspect", "detail", "paper", "ours", "why"],
                      "rows": [[r["kind"], r["aspect"], r["detail"], r["quote"], r["ours"], r["why"]]
                               for r in f["rows"]],
                      "align": ["l"] * 6})
    return b
