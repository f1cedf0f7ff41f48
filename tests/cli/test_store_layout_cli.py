"""A single-file store (every set in ``features.h5``, as the code before one-file-per-set wrote
it) through the real command line: list, verify, export, train and a no-op rerun read it as
it is and write nothing; the first extract with work moves it into ``features/<key>.h5``;
``verify --repair`` and ``merge`` work on it. The store is made by :func:`to_single_file`,
whose output is checked against the store the old code wrote (tests/extract/legacy_store)."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from clitools import ROOT, cli

from data.demo import make_demo_corpus

EGEMAPS = "opensmile:eGeMAPSv02"
LEGACY = ROOT / "tests" / "extract" / "legacy_store"


def to_single_file(wd: Path) -> None:
    """Rewrite a workdir's per-set files as one ``features.h5`` (layout 1): ``/sets/<key>/``
    holding each set's records and attrs, the root holding every header (``headers``)."""
    files = sorted((wd / "features").glob("*.h5"))
    headers = {}
    with h5py.File(wd / "features.h5", "w", libver="latest") as out:
        out.attrs["schema_version"] = 1
        sets = out.create_group("sets")
        for p in files:
            key = p.name[:-3]
            with h5py.File(p, "r", locking=False) as src:
                g = sets.create_group(key)
                for a in ("header", "schema_version", "name", "spec", "config_hash"):
                    g.attrs[a] = src.attrs[a]
                for child in src:
                    src.copy(src[child], g, name=child)
                headers[key] = json.loads(src.attrs["header"])
        out.attrs["headers"] = json.dumps(headers, sort_keys=True)
    shutil.rmtree(wd / "features")


def _tree(path: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    with h5py.File(path, "r", locking=False) as f:
        out["/"] = dict(f.attrs)
        def visit(name, obj):
            out[name] = obj[()] if isinstance(obj, h5py.Dataset) else dict(obj.attrs)
        f.visititems(visit)
    return out


def test_to_single_file_writes_what_the_old_code_wrote(tmp_path):
    spec = importlib.util.spec_from_file_location("legacy_make", LEGACY / "make.py")
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    make.write(tmp_path / "wd", pending=False)  # today's code: one file per set
    to_single_file(tmp_path / "wd")
    got, want = _tree(tmp_path / "wd" / "features.h5"), _tree(LEGACY / "compacted" / "features.h5")
    assert sorted(got) == sorted(want)
    for name in want:
        if isinstance(want[name], dict):
            assert {k: v for k, v in got[name].items()} == want[name], name
        else:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def _extract(corpus: Path, wd: Path, *extra: str, features=(EGEMAPS, "logmel:16")):
    return cli("extract", "--corpus", str(corpus), "--layout", "avb", "--workdir", str(wd),
               "--features", *features, "--workers", "1", "--no-progress", *extra)


def _export(wd: Path, out: Path) -> dict[str, np.ndarray]:
    cli("export", "--workdir", str(wd), "--features", EGEMAPS, "--out", str(out))
    z = np.load(out)
    return dict(zip(z["ids"], z["X"]))


def _same(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for k, v in a.items():
        np.testing.assert_array_equal(v, b[k])


def _stamp(wd: Path) -> dict:
    return {str(p.relative_to(wd)): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in wd.rglob("*") if p.is_file() and p.name != "extract.lock"}


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("layout")
    corpus = root / "corpus"
    make_demo_corpus(corpus, n_clips=12, seed=3)
    ref = root / "ref"
    _extract(corpus, ref)
    legacy = root / "legacy"
    shutil.copytree(ref, legacy)
    to_single_file(legacy)
    return {"corpus": corpus, "ref": ref, "legacy": legacy, "root": root}


def _copy(made, name: str, tmp_path: Path) -> Path:
    wd = tmp_path / name
    shutil.copytree(made["legacy"], wd)
    return wd


def test_a_single_file_store_is_read_as_it_is(made, tmp_path):
    wd = _copy(made, "wd", tmp_path)
    ref = _export(made["ref"], tmp_path / "ref.npz")
    before = _stamp(wd)
    sets = json.loads(cli("list", "--workdir", str(wd), "--json").stdout)
    assert sorted(s["spec"] for s in sets) == sorted([EGEMAPS, "logmel:16"])
    assert [(s["rows"], s["failed"], s["parts_pending"]) for s in sets] == [(12, 0, 0)] * 2
    v = cli("verify", "--workdir", str(wd))
    assert v.stdout.count("12 rows of 12 clips OK") == 2
    assert "features.h5 is a single-file store" in v.stdout
    _same(_export(wd, tmp_path / "a.npz"), ref)
    cli("train", "--workdir", str(wd), "--task", "avb-high", "--features", EGEMAPS,
        "--head", "ridge", "--n-boot", "5", "--run-name", "r")
    assert (wd / "runs" / "r" / "metrics.json").is_file()
    p = _extract(made["corpus"], wd)  # a no-op rerun: nothing to compute, nothing written
    assert p.stdout.count("12 reused, 0 computed") == 2
    after = {k: v for k, v in _stamp(wd).items() if not k.startswith("runs")}
    assert after == before and (wd / "features.h5").exists()


def test_the_first_extract_with_work_gives_every_set_its_own_file(made, tmp_path):
    wd = _copy(made, "wd", tmp_path)
    ref = _export(made["ref"], tmp_path / "ref.npz")
    _extract(made["corpus"], wd, features=("logmel:8",))
    assert not (wd / "features.h5").exists() and not (wd / "features.journal").exists()
    assert len(list((wd / "features").glob("*.h5"))) == 3
    v = cli("verify", "--workdir", str(wd))
    assert v.stdout.count("12 rows of 12 clips OK") == 3 and "single-file" not in v.stdout
    _same(_export(wd, tmp_path / "a.npz"), ref)
    for f in (wd / "features").glob("*.h5"):  # the moved sets are what the reference stores
        twin = made["ref"] / "features" / f.name
        if twin.exists():
            a, b = _tree(f), _tree(twin)
            for name, value in b.items():
                if not isinstance(value, dict):
                    np.testing.assert_array_equal(a[name], value, err_msg=f"{f.name}/{name}")


def test_repair_of_a_damaged_single_file_store(made, tmp_path):
    wd = _copy(made, "wd", tmp_path)
    ref = _export(made["ref"], tmp_path / "ref.npz")
    data = (wd / "features.h5").read_bytes()
    (wd / "features.h5").write_bytes(data[: len(data) // 2])
    v = cli("verify", "--workdir", str(wd), check=3)
    assert "cannot be opened by HDF5" in v.stdout and "--repair" in v.stdout
    r = cli("verify", "--workdir", str(wd), "--repair")
    assert "moved aside" in r.stdout and r.stdout.count("recomputed 12 row(s)") == 2, r.stdout
    assert list(wd.glob("features.h5.damaged-*")) and not (wd / "features.h5").exists()
    assert len(list((wd / "features").glob("*.h5"))) == 2
    _same(_export(wd, tmp_path / "a.npz"), ref)


def test_merge_folds_a_single_file_shard(made, tmp_path):
    wd = tmp_path / "wd"
    for k in (0, 1):
        _extract(made["corpus"], wd, "--shard", f"{k}/2")
    to_single_file(wd / "shards" / "0-of-2")
    out = cli("merge", "--workdir", str(wd)).stdout
    assert out.count("merged 2 shard(s), 12 rows now stored") == 2, out
    assert not (wd / "shards").exists() and not (wd / "features.h5").exists()
    _same(_export(wd, tmp_path / "a.npz"), _export(made["ref"], tmp_path / "ref.npz"))
