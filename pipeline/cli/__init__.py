"""The `dogbreed-pipeline` command line (pipeline/cli/main.py has the table of commands)."""

from pipeline.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
