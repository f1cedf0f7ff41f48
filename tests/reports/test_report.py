"""The report: every figure written, report.md links what exists, report.html is one
self-contained file whose images decode, and it renders in headless Chromium without a
broken image."""
from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest

from benchmarks.probe import SYNTHETIC_SPEC, make_synthetic_workdir
from extract.store import FeatureStore
from reports import plots
from reports.report import FILES_DIR, normalise_curve, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """Runs (regression, classification, torch-like curves), a probe, a permutation study and a
    failed clip. (The weighted-sum head is left out: torch's first optimiser step costs
    seconds; its figure is tested on its own.)"""
    from heads.experiment import ExperimentConfig, run_experiment
    from heads.permutation import PermutationConfig, run_permutation
    from heads.probe import ProbeConfig, run_probe

    wd = tmp_path_factory.mktemp("report") / "wd"
    make_synthetic_workdir(wd, n_clips=240, n_layers=4, dim=8, poolings=("mean", "last"), seed=2)
    store = FeatureStore(wd)
    header = store.find(SYNTHETIC_SPEC)
    with store.writer(header) as w:
        # its audio changed (a new content hash) and the new file cannot be decoded: a failure
        # replaces the row of the old audio (one of the same audio never would)
        w.fail("c000007", "h7-changed", "audio could not be decoded (test)")
    for name, task, layer in (("high-l1", "avb-high", 1), ("high-l2", "avb-high", 2),
                              ("country-l2", "classify:Country", 2)):
        run_experiment(ExperimentConfig(workdir=str(wd), task=task, features=(SYNTHETIC_SPEC,),
                                        head="ridge", layer=layer, n_boot=20, run_name=name))
    for seed in range(2):  # what a torch head writes beside its metrics
        epochs = list(range(6))
        (wd / "runs" / "high-l2" / f"curves_seed{seed}.json").write_text(json.dumps({
            "epoch": epochs,
            "train_loss": {"emotion": [1 / (e + 1 + seed) for e in epochs]},
            "val_score": {"avb-high": [0.2 + 0.03 * e for e in epochs]},
            "task_weights": {"emotion": [1 + 0.1 * e for e in epochs],
                             "country": [1 - 0.1 * e for e in epochs]}}))
    run_probe(ProbeConfig(workdir=str(wd), features=SYNTHETIC_SPEC, task="avb-high", n_boot=50,
                          name="p"))
    run_permutation(PermutationConfig(workdir=str(wd), features=SYNTHETIC_SPEC, layer=1,
                                      trials=3, name="perm"))
    paths = write_report(wd)
    return wd, paths


def _is_png(data: bytes) -> bool:
    from PIL import Image

    if not data.startswith(PNG_MAGIC):
        return False
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im.size[0] > 50 and im.size[1] > 50


class _Imgs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.srcs.append(a.get("src") or "")
        for key in ("href", "src"):
            if tag != "img" and a.get(key):
                self.links.append(a[key])


# --------------------------------------------------------------------------------------------
def test_every_figure_is_written(workdir):
    wd, _ = workdir
    names = sorted(p.name for p in (wd / FILES_DIR).glob("*.png"))
    expected = ["avb-high-per-column.png", "classify_Country-Country-confusion-country-l2.png",
                "curves-high-l2.png", "weights-high-l2.png", "probe-p.png", "permutation-perm.png"]
    assert sorted(expected) == names
    for n in names:
        assert _is_png((wd / FILES_DIR / n).read_bytes()), n


@pytest.mark.parametrize("name", ["per_column", "confusion", "learning", "task_weights",
                                  "layer_curve", "layer_weights", "density"])
def test_each_plot_function_saves_a_png(tmp_path, name):
    curves = [normalise_curve({"train_loss": [1.0, 0.5, 0.2], "val_score": [0.1, 0.3, 0.4],
                               "task_weights": [[1.0, 1.0], [1.2, 0.8], [1.3, 0.7]],
                               "tasks": ["a", "b"]})]
    probe = {"task": "avb-high", "metric": "ccc", "poolings": ["mean"],
             "results": [{"layer": i, "pooling": "mean", "score": s, "ci": [s - 0.05, s + 0.05]}
                         for i, s in enumerate([0.1, 0.4, 0.3])],
             "best": {"layer": 1, "pooling": "mean", "score": 0.4},
             "weighted_sum": {"mean": {"layers": [0, 1, 2], "weights": [0.2, 0.5, 0.3],
                                       "weights_std": [0.0, 0.1, 0.1], "score": 0.42}}}
    calls = {
        "per_column": lambda p: plots.plot_per_column({"r1": {"Awe": 0.3, "Fear": 0.5},
                                                       "r2": {"Awe": 0.2, "Fear": np.nan}}, p),
        "confusion": lambda p: plots.plot_confusion([[3, 1], [0, 4]], ["a", "b"], p),
        "learning": lambda p: plots.plot_learning_curves(curves, p),
        "task_weights": lambda p: plots.plot_task_weights(curves, p),
        "layer_curve": lambda p: plots.plot_layer_curve(probe, p),
        "layer_weights": lambda p: plots.plot_layer_weights(probe, p),
        "density": lambda p: plots.plot_permutation_density(
            {"scores": {"true": [0.5, 0.52, 0.51], "shuffled": [0.4, 0.4, 0.4]}, "task": "t",
             "metric": "ccc", "aux": ["age"], "layer": 1, "pooling": "mean", "trials": 3}, p),
    }
    out = calls[name](tmp_path / "sub" / f"{name}.png")
    assert out == tmp_path / "sub" / f"{name}.png"
    assert out.stat().st_size > 0 and _is_png(out.read_bytes())


def test_normalise_curve_accepts_the_usual_shapes():
    a = normalise_curve({"epochs": [1, 2], "train_loss": [0.5, 0.4], "val_score": {"x": [0.1, 0.2]}})
    assert a["epoch"] == [1, 2] and a["train_loss"] == {"train loss": [0.5, 0.4]}
    b = normalise_curve([{"epoch": 0, "loss": 1.0, "weights": {"a": 0.4, "b": 0.6}},
                         {"epoch": 1, "loss": 0.8, "weights": {"a": 0.5, "b": 0.5}}])
    assert b["epoch"] == [0, 1] and b["task_weights"] == {"a": [0.4, 0.5], "b": [0.6, 0.5]}
    c = normalise_curve({"task_weights": [[1, 2], [3, 4]], "tasks": ["e", "c"]})
    assert c["task_weights"] == {"e": [1.0, 3.0], "c": [2.0, 4.0]} and c["epoch"] == [0, 1]


def test_markdown_has_tables_published_numbers_and_existing_links(workdir):
    wd, paths = workdir
    md = paths["md"].read_text()
    for text in ("## avb-high", "## classify:Country", "*published*", "A-VB 2022 baseline paper",
                 "## Layer probes", "Best: layer", "## Permutation studies", "Welch",
                 "## Feature sets", "failed `c000007`: audio could not be decoded", "## Training curves"):
        assert text in md, text
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(links) == 6
    for link in links:
        assert link.startswith(f"{FILES_DIR}/") and (wd / link).stat().st_size > 0


def test_html_is_self_contained_and_every_image_decodes(workdir):
    wd, paths = workdir
    page = paths["html"].read_text()
    parser = _Imgs()
    parser.feed(page)
    assert len(parser.srcs) == 6
    for src in parser.srcs:
        assert src.startswith("data:image/png;base64,")
        assert _is_png(base64.b64decode(src.split(",", 1)[1], validate=True))
    assert all(link.startswith("#") for link in parser.links), parser.links  # nothing external
    assert "<script" not in page and "published" in page
    report = json.loads(paths["json"].read_text())
    assert {"results", "probes", "permutation", "feature_sets"} <= set(report)


NO_CHROMIUM = "Chromium is not installed (Debian: apt-get install chromium)"

# measured by Chromium itself after layout: the widest table against the page's content box,
# and the tallest table cell in lines of its own line height
LAYOUT_PROBE = (
    "<script>window.addEventListener('load',function(){var main=document.querySelector('main');"
    "var cs=getComputedStyle(main);var inner=main.getBoundingClientRect().width-"
    "parseFloat(cs.paddingLeft)-parseFloat(cs.paddingRight);var wide=0,tall=0,where='';"
    "Array.prototype.forEach.call(document.querySelectorAll('table'),function(t){"
    "wide=Math.max(wide,t.scrollWidth-inner);});"
    "Array.prototype.forEach.call(document.querySelectorAll('td,th'),function(c){"
    "var s=getComputedStyle(c);var lh=parseFloat(s.lineHeight)||1.5*parseFloat(s.fontSize);"
    "var lines=(c.clientHeight-parseFloat(s.paddingTop)-parseFloat(s.paddingBottom))/lh;"
    "if(lines>tall){tall=lines;where=c.textContent.slice(0,60);}});"
    "document.body.setAttribute('data-overflow',Math.round(wide));"
    "document.body.setAttribute('data-tallest',tall.toFixed(2));"
    "document.body.setAttribute('data-tallest-cell',where.replace(/[^A-Za-z0-9_. :-]/g,''));"
    "});</script></body>")
MAX_CELL_LINES = 4


def chromium_layout(page, tmp_path, width: int = 1280) -> dict[str, str]:
    """Open ``page`` (a report.html) in headless Chromium at ``width`` px and return the
    measurements of :data:`LAYOUT_PROBE` (overflow in px, tallest cell in lines)."""
    exe = _chromium()
    checked = tmp_path / "layout.html"
    checked.write_text(page.read_text().replace("</body>", LAYOUT_PROBE))
    dom = subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                          f"--window-size={width},2000", "--virtual-time-budget=10000",
                          "--dump-dom", checked.as_uri()],
                         capture_output=True, text=True, timeout=90, check=False).stdout
    body = re.search(r"<body[^>]*>", dom)
    assert body is not None, dom[:500]
    return dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body.group(0)))


@pytest.mark.skipif(_chromium() is None, reason=NO_CHROMIUM)
def test_page_layout_no_table_wider_than_the_page_no_tall_cells(workdir, tmp_path):
    _, paths = workdir
    m = chromium_layout(paths["html"], tmp_path)
    assert int(m["overflow"]) <= 1, f"a table is {m['overflow']} px wider than the page"
    assert float(m["tallest"]) <= MAX_CELL_LINES, (
        f"a cell is {m['tallest']} lines tall: {m.get('tallest-cell')!r}")


@pytest.mark.skipif(_chromium() is None, reason=NO_CHROMIUM)
def test_html_renders_in_headless_chromium_without_broken_images(workdir, tmp_path):
    from PIL import Image

    wd, paths = workdir
    exe = _chromium()
    profile = tmp_path / "profile"
    shot = tmp_path / "shot.png"
    subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--hide-scrollbars",
                    "--window-size=1280,3000", f"--screenshot={shot}",
                    paths["html"].resolve().as_uri()],
                   capture_output=True, timeout=90, check=False)
    assert shot.stat().st_size > 0
    with Image.open(shot) as im:
        pixels = np.asarray(im.convert("L"), dtype=np.float64)
    assert pixels.std() > 10  # not a blank page
    # Chromium itself counts images that failed to decode: a copy of the page with a probe
    probe = ("<script>window.addEventListener('load',function(){var im=Array.prototype.slice"
             ".call(document.images);document.body.setAttribute('data-images',im.length);"
             "document.body.setAttribute('data-broken',im.filter(function(i){return !(i.complete"
             "&&i.naturalWidth>0)}).length);});</script></body>")
    checked = tmp_path / "checked.html"
    checked.write_text(paths["html"].read_text().replace("</body>", probe))
    dom = subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                          "--virtual-time-budget=10000", "--dump-dom", checked.as_uri()],
                         capture_output=True, text=True, timeout=90, check=False).stdout
    body = re.search(r"<body[^>]*>", dom)
    assert body is not None, dom[:500]
    assert 'data-images="6"' in body.group(0) and 'data-broken="0"' in body.group(0), body.group(0)


def _drawn(monkeypatch, fn, *args, **kwargs):
    """The matplotlib figure a plot function would save."""
    captured = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path: captured.setdefault("fig", fig))
    fn(*args, "unused.png", **kwargs)
    return captured["fig"]


def test_probe_line_colours_belong_to_the_pooling_not_its_position(monkeypatch):
    def probe(poolings):
        return {"task": "t", "metric": "ccc", "poolings": poolings,
                "results": [{"layer": i, "pooling": p, "score": 0.1 * i, "ci": [0, 0.5]}
                            for p in poolings for i in range(3)], "best": None}

    colours = []
    for order in (["mean", "last"], ["last", "std", "mean"]):
        fig = _drawn(monkeypatch, plots.plot_layer_curve, probe(order))
        colours.append({ln.get_label(): ln.get_color() for ln in fig.axes[0].get_lines()})
    assert colours[0]["mean pooling"] == colours[1]["mean pooling"] == plots.POOLING_COLOURS["mean"]
    assert colours[0]["last pooling"] == colours[1]["last pooling"] == plots.POOLING_COLOURS["last"]
    assert len({plots.pooling_colour(p) for p in ("mean", "last", "first", "max", "std")}) == 5


def test_per_column_legend_sits_beside_the_bars(monkeypatch):
    runs = {f"a-rather-long-run-name-number-{i}-ridge-eGeMAPSv02": {f"c{j}": 0.1 * j for j in range(10)}
            for i in range(6)}
    fig = _drawn(monkeypatch, plots.plot_per_column, runs, title="t")
    fig.canvas.draw()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1  # right of the axes: never over the ticks
    assert len(ax.get_legend().get_texts()) == 6
