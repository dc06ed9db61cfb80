"""Where things are in the checkout, for tests that run the real scripts and commands."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
SCRIPTS = ROOT / "scripts"
