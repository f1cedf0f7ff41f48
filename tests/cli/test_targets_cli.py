"""regress:COL targets are named after their columns (issue 14 point 3), through the real CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from clitools import cli

SR = 16000
FEATS = "opensmile:eGeMAPSv02"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("targets") / "c"
    (root / "audio").mkdir(parents=True)
    rng = np.random.default_rng(1)
    rows = []
    for i in range(24):
        t = np.arange(int(0.3 * SR)) / SR
        x = 0.3 * np.sin(2 * np.pi * (120 + 15 * i) * t) + 0.02 * rng.standard_normal(len(t))
        sf.write(root / "audio" / f"a{i}.wav", x.astype(np.float32), SR)
        rows.append({"file": f"audio/a{i}.wav", "split": ["train", "train", "val"][i % 3],
                     "valence": i / 24 + 0.05 * rng.standard_normal(),
                     "arousal": 1 - i / 24 + 0.05 * rng.standard_normal()})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    wd = root.parent / "wd"
    cli("extract", "--corpus", str(root), "--layout", "csv", "--workdir", str(wd), "--features",
        FEATS, "--no-progress")
    return wd


def test_loss_names_a_column_of_a_regress_task(workdir):
    cli("train", "--workdir", str(workdir), "--task", "regress:valence,arousal", "--features",
        FEATS, "--head", "mlp-avb", "--loss", "ccc,arousal=mse", "--epochs", "2", "--n-boot", "10",
        "--run-name", "named")
    m = json.loads((workdir / "runs" / "named" / "metrics.json").read_text())
    targets = m["tasks"]["regress:valence,arousal"]["val"]["targets"]
    assert set(targets) == {"valence", "arousal"}
    assert targets["arousal"]["per_column"].keys() == {"arousal"}
    # the headline is still the mean CCC over the columns
    v = m["tasks"]["regress:valence,arousal"]["val"]
    assert v["score"] == pytest.approx(np.mean([targets[c]["score"] for c in ("valence", "arousal")]))
    # a name that is not a column is refused, naming the targets there are
    p = cli("train", "--workdir", str(workdir), "--task", "regress:valence,arousal", "--features",
            FEATS, "--head", "mlp-avb", "--loss", "ccc,regress=mse", "--epochs", "1", check=2)
    assert "['regress']" in p.stderr and "'valence', 'arousal'" in p.stderr
