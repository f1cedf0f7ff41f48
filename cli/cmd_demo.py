"""``demo``: the whole pipeline on a generated corpus, in a few minutes on two cores."""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from cli.common import EXIT_OK, say

# (task, head, features) trained by the demo
DEMO_RUNS = [
    ("avb-high", "ridge", ("opensmile:eGeMAPSv02",)),
    ("avb-high", "ridge", ("opensmile:ComParE_2016",)),
    ("avb-high", "xgb", ("opensmile:eGeMAPSv02",)),
    ("avb-two", "ridge", ("opensmile:eGeMAPSv02",)),
    ("avb-type", "logreg", ("opensmile:eGeMAPSv02",)),
    ("avb-type", "xgb", ("opensmile:eGeMAPSv02",)),
    ("exvo", "ridge", ("opensmile:eGeMAPSv02",)),
    ("exvo", "logreg", ("opensmile:eGeMAPSv02",)),
]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the whole pipeline on a built-in demo corpus",
                       description="Generates a demo corpus in the A-VB layout (labels are known "
                                   "functions of the sound), extracts openSMILE ComParE_2016 and "
                                   "eGeMAPSv02 and the embeddings of two SSL families (wav2vec2-base "
                                   "and whisper-base when available offline, else small untrained "
                                   "stand-ins), trains ridge / logreg / xgb heads, probes every "
                                   "layer of both models, compares their layers (analyze: CKA, "
                                   "CCA with eGeMAPS) and writes the report.")
    p.add_argument("--workdir", default="runs/demo", metavar="DIR",
                   help="where the corpus, store, runs and report go (default: runs/demo)")
    p.add_argument("--clips", type=int, default=320, help="number of demo clips (default: 320)")
    p.add_argument("--seed", type=int, default=0, help="corpus seed (default: 0)")
    p.add_argument("--workers", type=int, default=max(1, os.cpu_count() or 2),
                   help="extraction processes (default: all cores)")
    p.set_defaults(func=run)


# the two model families of the demo's layer study: hub id, untrained stand-in, folder name
DEMO_MODELS = (
    ("facebook/wav2vec2-base", "make_untrained_wav2vec2", "untrained-wav2vec2-small"),
    ("openai/whisper-base", "make_untrained_whisper", "untrained-whisper-tiny"),
)


def _ssl_model(wd: Path, hub_id: str, maker: str, folder: str) -> tuple[str, bool]:
    """``hub_id`` when its weights are here (offline), else a small untrained stand-in."""
    from extract import untrained
    from extract.base import ExtractOptions, ExtractorUnavailable
    from extract.run import prepare_extractor

    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"  # look, never download
    try:
        prepare_extractor(f"ssl:{hub_id}", ExtractOptions())
        return hub_id, True
    except (ExtractorUnavailable, ValueError, OSError):
        return str(getattr(untrained, maker)(wd / "models" / folder)), False
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old


def run(args: argparse.Namespace) -> int:
    from cli.main import build_parser
    from data.demo import make_demo_corpus

    t0 = time.perf_counter()
    wd = Path(args.workdir)
    corpus_dir = wd / "corpus"
    if not (corpus_dir / "labels").is_dir():
        say(f"generating {args.clips} demo clips into {corpus_dir}")
        make_demo_corpus(corpus_dir, n_clips=args.clips, seed=args.seed)
    parser = build_parser()

    def command(*argv: str) -> int:
        sub = parser.parse_args(list(argv))
        return int(sub.func(sub) or 0)

    common = ["--corpus", str(corpus_dir), "--layout", "avb", "--workdir", str(wd),
              "--workers", str(args.workers)]
    rc = command("extract", *common, "--features", "opensmile:eGeMAPSv02", "opensmile:ComParE_2016")
    models = []
    for hub_id, maker, folder in DEMO_MODELS:
        model, trained = _ssl_model(wd, hub_id, maker, folder)
        if not trained:
            say(f"{hub_id} is not available offline: using an UNTRAINED small model ({model}) to "
                f"exercise the SSL path; its scores are not a result")
        rc = max(rc, command("extract", *common, "--features", f"ssl:{model}"))
        models.append((hub_id.split("/")[1] if trained else folder, model))
    for task, head, feats in DEMO_RUNS:
        name = f"demo-{task}-{head}-{feats[0].split(':')[1]}"
        command("train", "--workdir", str(wd), "--task", task, "--features", *feats, "--head", head,
                "--n-boot", "200", "--run-name", name)
    (w2v_name, w2v), (whisper_name, whisper) = models
    command("train", "--workdir", str(wd), "--task", "avb-high", "--features", f"ssl:{w2v}",
            "--head", "ridge", "--n-boot", "200", "--run-name", f"demo-avb-high-ridge-ssl-{w2v_name}")
    # the two-model layer study: probe both families, then compare their layers without training
    for name, model in models:
        command("probe", "--workdir", str(wd), "--features", f"ssl:{model}", "--task", "avb-high",
                "--head", "ridge", "--poolings", "mean,last", "--seeds", "2", "--n-boot", "200",
                "--name", f"demo-probe-avb-high-{name}")
    command("analyze", "--workdir", str(wd), "--features", f"ssl:{w2v}", "--against",
            f"ssl:{whisper}", "--acoustic", "opensmile:eGeMAPSv02", "--n-boot", "200",
            "--name", f"demo-layers-{w2v_name}-vs-{whisper_name}")
    command("report", "--workdir", str(wd))
    say(f"demo finished in {time.perf_counter() - t0:.0f} s; open {wd / 'report.html'} "
        f"(or {wd / 'report.md'})")
    return rc or EXIT_OK
