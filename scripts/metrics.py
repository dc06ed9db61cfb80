"""The single printed metric-line format that SageMaker's metric regexes read.

`pipeline/metrics.py` holds the matching regexes; a test runs the real scripts and parses
their output with them, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

PREFIX = "METRICS"


def format_metrics(**values: float) -> str:
    """`METRICS epoch=3 train_loss=1.234567 ...`; integers as such, floats with 6 decimals."""
    parts = []
    for name, value in values.items():
        parts.append(f"{name}={value}" if isinstance(value, int) else f"{name}={value:.6f}")
    return " ".join([PREFIX, *parts])


def print_metrics(**values: float) -> None:
    print(format_metrics(**values), flush=True)
