"""The report shows, under a task's results, the fidelity of each recipe its runs came from."""
from __future__ import annotations

import json

from benchmarks.probe import SYNTHETIC_SPEC, make_synthetic_workdir
from heads.recipes import load_recipe
from reports.report import write_report

RECIPE = "slabcnu-lstm"


def test_fidelity_counts_and_differing_details_beside_the_results(tmp_path):
    from heads.experiment import ExperimentConfig, run_experiment

    wd = tmp_path / "wd"
    make_synthetic_workdir(wd, n_clips=120, n_layers=3, dim=8, poolings=("mean",), seed=3)
    for name, recipe in (("from-recipe", RECIPE), ("from-gone-recipe", "no-such-recipe-anymore")):
        run_experiment(ExperimentConfig(workdir=str(wd), task="avb-high", features=(SYNTHETIC_SPEC,),
                                        head="ridge", layer=1, n_boot=20, run_name=name),
                       recipe={"name": recipe, "task": "avb-high", "run_task": "avb-high",
                               "same_task": True, "not_applied": [], "published": []})
    run_experiment(ExperimentConfig(workdir=str(wd), task="avb-high", features=(SYNTHETIC_SPEC,),
                                    head="ridge", layer=2, n_boot=20, run_name="plain"))
    write_report(wd)
    md = (wd / "report.md").read_text()
    fid = load_recipe(RECIPE).fidelity
    c = fid.counts()
    assert (f"**Fidelity of recipe `{RECIPE}`** (runs `from-recipe`) to {fid.citation()}, "
            f"{fid.table}: {c['match']} details match, {c['option']} are options, {c['differs']} "
            f"differ, {c['not stated']} are not stated by the paper.") in md
    assert f"`python run_pipeline.py recipes --fidelity {RECIPE}`" in md
    table = [line for line in md.split(f"**Fidelity of recipe `{RECIPE}`**")[1].splitlines()
             if line.startswith("| differs") or line.startswith("| option")]
    expected = [r for r in fid.rows if r.kind in ("differs", "option")]
    assert len(table) == len(expected) > 0
    for line, row in zip(table, expected):
        assert line.startswith(f"| {row.kind} | {row.aspect} | {row.detail} |")
    assert "`no-such-recipe-anymore` (runs `from-gone-recipe`): the recipe no longer ships" in md
    assert "`plain`" not in md.split("## avb-high")[1].split("Fidelity")[1]  # no recipe, no line
    data = json.loads((wd / "report.json").read_text())
    assert data["fidelity"][RECIPE]["counts"] == c
