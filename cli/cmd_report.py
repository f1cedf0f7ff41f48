"""``report``: every run of a workdir in one report."""
from __future__ import annotations

import argparse

from cli.common import EXIT_OK, UsageError, add_workdir, say


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write WORKDIR/report.md and report.json from every run",
                       description="Gathers every run under WORKDIR/runs into a results table with "
                                   "published numbers beside ours, plus feature-set provenance and "
                                   "failed clips.")
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
