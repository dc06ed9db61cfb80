"""bandit, the static security scanner, finds nothing in the shipped code.

Every accepted finding carries an inline `# nosec BXXX - <why>` next to the ruff `noqa: S...`
that already justifies it, so a new finding fails here with its file and line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from helpers.paths import ROOT

BANDIT = os.path.join(os.path.dirname(sys.executable), "bandit")


def test_bandit_reports_no_findings_in_pipeline_steps_and_scripts():
    result = subprocess.run(
        [BANDIT, "-r", "pipeline", "steps", "scripts", "-q", "-f", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads(result.stdout)
    assert report["errors"] == [], report["errors"]
    findings = [
        f"{item['filename']}:{item['line_number']}: {item['test_id']} {item['issue_text']}"
        for item in report["results"]
    ]
    assert findings == [], "\n".join(findings)
    assert result.returncode == 0, result.stderr
