"""Training-free layer analysis: linear CKA against a Gram-matrix HSIC written here, CCA against
scikit-learn and the eigenvalue definition, the weighted bootstrap correlation against repeated
rows, the eGeMAPS descriptor groups against openSMILE's own column names, and `analyze` through
the command line on a store whose acoustics come from one layer."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import ortho_group
from sklearn.cross_decomposition import CCA

from benchmarks.probe import SYNTHETIC_SPEC, make_synthetic_workdir
from extract.store import FeatureStore, FieldSpec, SetHeader
from heads.analysis.cca import choose_reg, correlations, fit_cca, weighted_correlations
from heads.analysis.cka import cka_matrix, linear_cka
from heads.analysis.descriptors import EGEMAPS_GROUPS, descriptor_groups
from heads.analysis.study import AnalyzeConfig
from tests.cli.clitools import cli

SIGNAL_LAYER = 3


def hsic_cka(x: np.ndarray, y: np.ndarray) -> float:
    """CKA from its definition: centred Gram matrices H K H and their normalised inner product."""
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    k = h @ (x @ x.T) @ h
    m = h @ (y @ y.T) @ h
    return float(np.sum(k * m) / np.sqrt(np.sum(k * k) * np.sum(m * m)))


def test_cka_equals_gram_definition_and_its_invariances():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 7))
    y = x @ rng.normal(size=(7, 5)) + 0.5 * rng.normal(size=(60, 5))
    assert linear_cka(x, y) == pytest.approx(hsic_cka(x, y), rel=1e-10)
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    q = ortho_group.rvs(7, random_state=1)
    assert linear_cka(x @ q * 3.7 + 2.0, y) == pytest.approx(linear_cka(x, y), rel=1e-10)
    # not invariant to a general linear map: a badly conditioned one changes it
    skew = np.diag([100.0, 1, 1, 1, 1, 1, 0.01])
    assert abs(linear_cka(x @ skew, y) - linear_cka(x, y)) > 1e-3


@pytest.mark.parametrize("method", ["features", "gram", "auto"])
def test_cka_matrix_equals_pairwise(method, monkeypatch):
    import heads.analysis.cka as cka

    monkeypatch.setattr(cka, "GRAM_BLOCK_ELEMENTS", 3 * 40 * 7)  # several Gram blocks
    rng = np.random.default_rng(2)
    layers = [rng.normal(size=(40, d)) for d in (3, 9, 5)]
    layers.append(layers[1] @ rng.normal(size=(9, 4)))
    got = cka_matrix(layers, method=method)
    for i, a in enumerate(layers):
        for j, b in enumerate(layers):
            assert got[i, j] == pytest.approx(hsic_cka(a, b), rel=1e-9)


def test_cka_of_a_constant_layer_is_nan_not_a_number():
    rng = np.random.default_rng(3)
    got = cka_matrix([rng.normal(size=(10, 2)), np.ones((10, 3))])
    assert got[0, 0] == pytest.approx(1.0)
    assert np.isnan(got[1, 1]) and np.isnan(got[0, 1])


def _pair(n=300, seed=4):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    x = np.c_[z, rng.normal(size=(n, 3))] @ rng.normal(size=(5, 5))
    y = np.c_[z[:, :1] + 0.8 * rng.normal(size=(n, 1)), rng.normal(size=(n, 2))] @ rng.normal(size=(3, 3))
    return x, y


def test_first_canonical_correlation_equals_sklearn():
    x, y = _pair()
    ours = fit_cca(x, y, reg=0.0).fit_corr
    ref = CCA(n_components=1, max_iter=20000, tol=1e-14).fit(x, y)
    u, v = ref.transform(x, y)
    assert ours[0] == pytest.approx(np.corrcoef(u[:, 0], v[:, 0])[0, 1], abs=1e-6)


def test_canonical_correlations_are_the_eigenvalue_definition():
    x, y = _pair(seed=5)
    xc, yc = x - x.mean(0), y - y.mean(0)
    sxx, syy, sxy = xc.T @ xc, yc.T @ yc, xc.T @ yc
    rho2 = np.sort(np.linalg.eigvals(np.linalg.solve(sxx, sxy) @ np.linalg.solve(syy, sxy.T)).real)
    fit = fit_cca(x, y, reg=0.0)
    assert np.sort(fit.fit_corr ** 2) == pytest.approx(rho2[-3:], abs=1e-10)
    # the variates of the fitting clips have exactly those correlations and are uncorrelated
    u, v = fit.transform(x, y)
    assert correlations(u, v) == pytest.approx(fit.fit_corr, abs=1e-10)
    assert np.corrcoef(u.T) == pytest.approx(np.eye(3), abs=1e-8)


def test_weighted_correlations_equal_repeated_rows():
    rng = np.random.default_rng(6)
    u, v = rng.normal(size=(30, 2)), rng.normal(size=(30, 2))
    v[:, 0] += u[:, 0]
    counts = rng.integers(0, 3, size=(4, 30)).astype(float)
    got = weighted_correlations(counts, u, v)
    for b in range(4):
        idx = np.repeat(np.arange(30), counts[b].astype(int))
        for k in range(2):
            assert got[b, k] == pytest.approx(np.corrcoef(u[idx, k], v[idx, k])[0, 1], rel=1e-9)


def test_chosen_shrinkage_beats_none_on_fresh_clips():
    """80 fitting clips, 40 + 10 dims, one shared direction: the cross-validated shrinkage is
    never 0 and, over eight draws, gives higher correlations on 2,000 fresh clips than none."""
    chosen, plain = [], []
    for seed in range(8):
        rng = np.random.default_rng(seed)

        def draw(n):
            z = 2.0 * rng.normal(size=(n, 1))
            x, y = rng.normal(size=(n, 40)), rng.normal(size=(n, 10))
            x[:, :1] += z
            y[:, :1] += z
            return x, y

        x, y = draw(80)
        xt, yt = draw(2000)
        reg = choose_reg(x, y, pca_dims=None, n_components=1)
        assert reg > 0

        def fresh(r):
            return correlations(*fit_cca(x, y, reg=r, n_components=1).transform(xt, yt))[0]

        chosen.append(fresh(reg))
        plain.append(fresh(0.0))
    assert np.mean(chosen) > np.mean(plain) + 0.01


def test_egemaps_groups_cover_opensmile_columns_once():
    import opensmile

    cols = list(opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                                feature_level=opensmile.FeatureLevel.Functionals).feature_names)
    groups = descriptor_groups(cols)
    assert set(groups) == set(EGEMAPS_GROUPS)
    flat = sorted(i for v in groups.values() for i in v)
    assert flat == list(range(len(cols))) == list(range(88))
    assert [cols[i] for i in groups["jitter"]] == ["jitterLocal_sma3nz_amean",
                                                   "jitterLocal_sma3nz_stddevNorm"]


ACOUSTIC_COLUMNS = ["F0semitoneFrom27.5Hz_sma3nz_amean", "loudness_sma3_amean",
                    "jitterLocal_sma3nz_amean", "HNRdBACF_sma3nz_amean",
                    "F1frequency_sma3nz_amean", "mfcc1_sma3_amean"]


@pytest.fixture(scope="module")
def analysis_wd(tmp_path_factory):
    """The probe's synthetic store (signal in layer 3) plus an acoustic set made from layer 3."""
    wd = tmp_path_factory.mktemp("analysis") / "wd"
    info = make_synthetic_workdir(wd, n_clips=300, n_layers=6, dim=16, signal_layer=SIGNAL_LAYER,
                                  poolings=("mean",), seed=5)
    store = FeatureStore(wd)
    x, ok = store.read(info["key"], "pooled_mean", info["ids"], index=SIGNAL_LAYER)
    assert ok.all()
    rng = np.random.default_rng(0)
    acoustic = x.astype(np.float64) @ rng.normal(size=(16, len(ACOUSTIC_COLUMNS)))
    acoustic += 0.5 * acoustic.std(0) * rng.normal(size=acoustic.shape)
    header = SetHeader(key="opensmile-test-000000000000", name="opensmile-test",
                       spec="opensmile:test", config={"extractor": "opensmile", "test": 1},
                       config_hash="000000000000",
                       fields={"functionals": FieldSpec((len(ACOUSTIC_COLUMNS),), "float32",
                                                        attrs={"columns": ACOUSTIC_COLUMNS})})
    with store.writer(header) as w:
        for i, cid in enumerate(info["ids"]):
            w.add(cid, f"h{i}", {"functionals": acoustic[i].astype(np.float32)})
    return wd, info


def test_analyze_command_finds_the_layer_the_acoustics_come_from(analysis_wd):
    wd, info = analysis_wd
    p = cli("analyze", "--workdir", str(wd), "--features", SYNTHETIC_SPEC, "--against",
            info["key"], "--acoustic", "opensmile:test", "--n-boot", "200", "--name", "a")
    d = json.loads((wd / "analyses" / "a" / "analysis.json").read_text())
    within = np.array(d["cka"]["within"][info["key"]])
    assert np.diag(within) == pytest.approx(1.0)
    assert np.array(d["cka"]["between"]["values"]) == pytest.approx(within)  # same set twice
    assert d["cka"]["n_clips"] == 300
    c = d["cca"][0]
    assert c["division"] == "fitted on Train, scored on Val"
    assert (c["n_fit"], c["n_held_out"]) == (150, 75)
    assert c["best_layer"] == SIGNAL_LAYER and c["best_separated"]
    best = c["per_layer"][SIGNAL_LAYER]
    assert best["first_cc"] > 0.9 and best["ci"][0] <= best["mean_cc"] <= best["ci"][1]
    assert set(best["groups"]) == {"pitch", "loudness", "jitter", "harmonicity",
                                   "formant frequency", "mfcc"}
    assert f"{SIGNAL_LAYER:>5}" in p.stdout and "*" in p.stdout
    for f in ("cka.png", "cca.png", f"cca_{info['key']}.csv"):
        assert (wd / "analyses" / "a" / f).stat().st_size > 0


def test_analyze_refuses_missing_pooling_and_non_layered_sets(analysis_wd):
    wd, _ = analysis_wd
    p = cli("analyze", "--workdir", str(wd), "--features", SYNTHETIC_SPEC, "--pooling", "max",
            check=2)
    assert "stored poolings: mean" in p.stderr and "--pooling mean" in p.stderr
    p = cli("analyze", "--workdir", str(wd), "--features", "opensmile:test", check=2)
    assert "needs an ssl: set" in p.stderr
    with pytest.raises(ValueError, match=r"--cca-reg must be in \[0, 1\)"):
        AnalyzeConfig(workdir=str(wd), features=SYNTHETIC_SPEC, reg=1.5).check()


def test_report_shows_the_analysis_with_its_figures_and_best_layer(analysis_wd):
    from heads.analysis.study import run_analysis
    from reports.report import FILES_DIR, write_report

    wd, info = analysis_wd
    run_analysis(AnalyzeConfig(workdir=str(wd), features=SYNTHETIC_SPEC, against=info["key"],
                               acoustic="opensmile:test", n_boot=100, name="for-report"))
    write_report(wd)
    md = (wd / "report.md").read_text()
    section = md[md.index("## Layer analyses (training-free)"):]
    section = section[section.index("### for-report"):]
    section = section.split("\n### ")[0].split("\n## ")[0]  # this study only
    assert f"**Highest: layer {SIGNAL_LAYER}** (its CI lies above every other layer's)" in section
    rows = [line for line in section.splitlines() if line.startswith("|")]
    cca_rows = [r for r in rows if r.count("|") == 7]  # layer, mean, CI, first, shrinkage, group
    assert len(cca_rows) == 2 * (2 + 6)  # one CCA per set (the same set twice): header, rule, 6 layers
    best_row = [c.strip() for c in cca_rows[2 + SIGNAL_LAYER].strip("|").split("|")]
    d = json.loads((wd / "analyses" / "for-report" / "analysis.json").read_text())
    best = d["cca"][0]["per_layer"][SIGNAL_LAYER]
    assert best_row[:2] == [str(SIGNAL_LAYER), f"{best['mean_cc']:.3f}"]
    assert best_row[5].startswith(best["best_group"])
    # the same set twice: every layer's closest layer in the other set is itself
    closest = [r for r in rows if r.count("|") == 4][2:]
    assert [c.split("|")[1:3] for c in closest] == [[f" {k} ", f" {k} "] for k in range(6)]
    files = {p.name for p in (wd / FILES_DIR).iterdir()}
    assert {"cka-for-report.png", "cca-for-report.png"} <= files
    html = (wd / "report.html").read_text()
    assert 'id="analyses"' in html and html.count("data:image/png;base64") >= 2
