"""The README's "Your own corpus in five minutes" block, run command by command as written, in
a folder holding a generated ``mine/`` corpus with the columns the README names."""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from clitools import ROOT
from data.demo import make_demo_corpus


def _commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Your own corpus in five minutes", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    joined = re.sub(r"\\\n\s*", " ", block)
    return [shlex.split(line) for line in joined.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mine/wav/*.wav and mine/labels.csv (file, speaker, emotion): the demo's labelled clips
    under the README's names, no split column."""
    root = tmp_path_factory.mktemp("walk")
    demo = make_demo_corpus(root / "demo", n_clips=90, seed=6)
    info = pd.read_csv(demo / "labels" / "data_info.csv").merge(
        pd.read_csv(demo / "labels" / "type_info.csv"), on=["File_ID", "Split"])
    info = info[info["Voc_Type"].notna()]
    (root / "mine" / "wav").mkdir(parents=True)
    rows = []
    for k, r in enumerate(info.itertuples()):
        speaker = f"s{int(r.Subject_ID[1:]):02d}"
        name = f"wav/{speaker}_{k:03d}.wav"
        (root / "mine" / name).write_bytes((demo / "audio" / "wav" / f"{r.File_ID.strip('[]')}.wav").read_bytes())
        rows.append({"file": name, "speaker": speaker, "emotion": r.Voc_Type.lower()})
    labels = pd.DataFrame(rows)
    # the README's example file exists too (predict scores it)
    first = labels.iloc[0]["file"]
    (root / "mine" / "wav" / "s01_001.wav").write_bytes((root / "mine" / first).read_bytes())
    labels.to_csv(root / "mine" / "labels.csv", index=False)
    return root


@pytest.mark.slow
def test_the_readme_walkthrough_runs_as_written(folder: Path):
    commands = _commands()
    assert [c[2] for c in commands] == ["extract", "train", "train", "compare", "predict", "report"]
    outputs = []
    for cmd in commands:
        assert cmd[:2] == ["python", "run_pipeline.py"]
        p = subprocess.run([sys.executable, str(ROOT / "run_pipeline.py"), *cmd[2:]], cwd=folder,
                           capture_output=True, text=True)
        assert p.returncode == 0, f"{shlex.join(cmd)}\n{p.stdout}\n{p.stderr}"
        outputs.append(p.stdout)
    wd = folder / "runs" / "mine"
    split = pd.read_csv(wd / "split.csv")
    labels = pd.read_csv(folder / "mine" / "labels.csv")
    assert len(split) == len(labels)  # every clip has its split
    assert set(split["split"].str.lower()) == {"train", "val", "test"}
    for run in ("logreg", "svc"):
        m = json.loads((wd / "runs" / run / "metrics.json").read_text())
        target = m["tasks"]["classify:emotion"]["val"]["targets"]["emotion"]
        assert {"uar", "wa", "macro_f1", "per_class_recall"} <= set(target)
        assert (wd / "runs" / run / "model.json").is_file()
    assert "p" in outputs[3] and "logreg" in outputs[3]
    pred = pd.read_csv(folder / "new.csv")
    assert len(pred) == 1 and pred["emotion"].iloc[0] in set(labels["emotion"])
    assert (wd / "report.html").is_file() and (wd / "report.md").is_file()
