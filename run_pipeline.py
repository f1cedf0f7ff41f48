#!/usr/bin/env python3
"""Command-line entry point; everything lives in the ``cli`` package."""
import sys

from cli.main import main

if __name__ == "__main__":
    sys.exit(main())
