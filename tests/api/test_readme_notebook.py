"""The README's "From Python (notebooks)" block, executed exactly as written in an empty folder;
then what it built is checked against the store's own rows and against the command line run
with the same flags (same set keys and values, same run config and Val score)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from extract.store import FeatureStore

ROOT = Path(__file__).resolve().parents[2]


def _block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## From Python (notebooks)", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def _cli(cwd: Path, *args: str) -> str:
    p = subprocess.run([sys.executable, str(ROOT / "run_pipeline.py"), "-q", *args], cwd=cwd,
                       capture_output=True, text=True, check=False)
    assert p.returncode == 0, f"{args}\n{p.stdout}\n{p.stderr}"
    return p.stdout


@pytest.mark.slow
def test_the_readme_notebook_example_runs_as_written(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(_block(), "README.md", "exec"), ns)  # noqa: S102 - the README's own code
    out, err = capfd.readouterr()
    assert out == ""  # the API prints nothing
    assert "Loading weights" not in err  # transformers' bar is off while extracting

    model = str(ns["model"])
    store = FeatureStore(tmp_path / "nb" / "workdir")
    smile = store.find("opensmile:eGeMAPSv02")
    ssl = store.find(f"ssl:{model}")
    ids = sorted(store.status(ssl.key)[0])
    assert len(ids) == 60

    # the matrices are the store's rows, named as export names them
    X = ns["X"]
    want, _ = store.read(smile.key, "functionals", ids)
    assert list(X.index) == ids and X.shape == (60, 88)
    np.testing.assert_array_equal(X.to_numpy(), want.astype(np.float32))
    assert list(X.columns) == smile.fields["functionals"].attrs["columns"]
    layer4 = ssl.fields["pooled_mean"].attrs["layers"].index(4)
    train = sorted(ns["wd"].corpus().split_ids("Train"))
    E = ns["E"]
    assert list(E.index) == train and list(E.columns) == [f"l4_mean_{i}" for i in range(64)]
    want, _ = store.read(ssl.key, "pooled_mean", train, index=layer4)
    np.testing.assert_array_equal(E.to_numpy(), want.astype(np.float32))
    want, _ = store.read(ssl.key, "pooled_last", ids, index=layer4)
    assert ns["ids"] == ids
    np.testing.assert_array_equal(ns["E_np"], want.astype(np.float32))
    frames = ns["frames"]
    assert list(frames) == ids
    for cid in ids[:5]:
        np.testing.assert_array_equal(frames[cid], store.read_sequence(ssl.key, "frames_l4", cid))
    table = ns["table"]
    assert {"split", "group", "Awe", "Voc_Type"} <= set(table.columns)
    assert list(ns["sets"].index) == sorted(store.keys())

    # progress: every set counted up to its total, in order
    seen = ns["seen"]
    for spec in ("opensmile:eGeMAPSv02", f"ssl:{model}"):
        steps = [(d, t) for s, d, t in seen if s == spec]
        assert steps[0] == (0, 60) and steps[-1] == (60, 60)
        assert [d for d, _ in steps] == sorted(d for d, _ in steps)
    assert ns["epochs"] == [("mlp-avb seed0", k, 3) for k in (1, 2, 3)]
    assert ns["result"].failed == {} and [s.computed for s in ns["result"].summaries] == [60, 60]

    # the command line with the same flags: the same sets, values, configs and scores
    _cli(tmp_path, "extract", "--corpus", str(ns["corpus"]), "--layout", "avb", "--workdir",
         "cli", "--features", "opensmile:eGeMAPSv02", f"ssl:{model}", "--frames-layers", "4",
         "--device", "cpu", "--workers", "1", "--no-progress")
    cli_store = FeatureStore(tmp_path / "cli")
    assert sorted(cli_store.keys()) == sorted(store.keys())
    for key, field in ((smile.key, "functionals"), (ssl.key, "pooled_mean")):
        a, _ = store.read(key, field, ids)
        b, _ = cli_store.read(key, field, ids)
        np.testing.assert_array_equal(a, b)
    api_ref = json.loads((tmp_path / "nb" / "workdir" / "corpus.json").read_text())
    assert json.loads((tmp_path / "cli" / "corpus.json").read_text()) == api_ref
    runs = {"logreg": (ns["run"], ["--task", "avb-type", "--features", "opensmile:eGeMAPSv02",
                                   "--head", "logreg"]),
            "mlp": (ns["mlp"], ["--task", "avb-two", "--features", f"ssl:{model}", "--head",
                                "mlp-avb", "--layer", "4", "--epochs", "3"])}
    for name, (api_run, flags) in runs.items():
        _cli(tmp_path, "train", "--workdir", "cli", *flags, "--run-name", name)
        cli_cfg = json.loads((tmp_path / "cli" / "runs" / name / "config.json").read_text())
        api_cfg = json.loads((api_run.run_dir / "config.json").read_text())
        for cfg in (cli_cfg, api_cfg):
            cfg.pop("workdir"), cfg.pop("run_name")
        assert api_cfg == cli_cfg
        cli_metrics = json.loads((tmp_path / "cli" / "runs" / name / "metrics.json").read_text())
        assert api_run.metrics["val"]["score"] == pytest.approx(cli_metrics["val"]["score"],
                                                                abs=1e-6)
