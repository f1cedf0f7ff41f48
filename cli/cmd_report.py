"""``report``: every run of a workdir in one report."""
from __future__ import annotations

import argparse

from cli.common import EXIT_OK, UsageError, add_workdir, say


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write WORKDIR/report.md, report.html and report.json",
                       description="Gathers every run under WORKDIR/runs into results tables with "
                                   "published numbers beside ours (labelled, with their source), "
                                   "per-column CCC bars, confusion matrices, learning curves and "
                                   "task weights of torch heads, layer probes (probes/), "
                                   "permutation studies (permutation/), feature-set provenance and "
                                   "failed clips. report.html is one self-contained file (figures "
                                   "embedded); report.md links the PNGs in WORKDIR/report_files/.")
    add_workdir(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from reports.report import write_report

    if not Path(args.workdir).is_dir():
        raise UsageError(f"--workdir {args.workdir} does not exist")
    paths = write_report(args.workdir)
    for kind, p in paths.items():
        say(f"wrote {p}")
    return EXIT_OK
