"""Every ``python run_pipeline.py ...`` line in the README's shell blocks parses: its command and
flags exist and their values pass argparse's own checks (whole runs of the README's examples are
in test_walkthrough_cli.py, test_run_cli.py and test_demo.py)."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split(" #", 1)[0].strip()
            for part in re.split(r"&&|;", line):
                part = part.strip()
                if part.startswith("python run_pipeline.py "):
                    commands.append(part)
    return commands


def _parseable(command: str) -> bool:
    """Lines that show alternatives (``a | b``) or optional parts (``[--flag]``) are syntax, not
    commands; their single-choice forms are elsewhere in the README."""
    return " | " not in command and "[" not in command and "..." not in command


COMMANDS = [c for c in readme_commands() if _parseable(c)]


def test_the_readme_has_commands():
    assert len(COMMANDS) >= 30


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_parses(command, capsys):
    argv = shlex.split(command)[2:]
    try:
        args = build_parser(argv).parse_args(argv)
    except SystemExit as exc:
        if exc.code == 0:  # --help / --version
            return
        pytest.fail(f"README command does not parse: {command}\n{capsys.readouterr().err}")
    assert args.command == argv[[a.startswith("-") for a in argv].index(False)]
