"""Metric regexes SageMaker applies to the training logs, and the tuning objective.

They match the one line format printed by scripts/metrics.py:
`METRICS epoch=3 train_loss=1.234567 train_accuracy=0.61 valid_loss=1.3 valid_accuracy=0.58`.
"""

_NUMBER = r"([0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)"

# SageMaker metric name -> key printed on the METRICS line.
_KEYS = {
    "train:loss": "train_loss",
    "train:accuracy": "train_accuracy",
    "valid:loss": "valid_loss",
    "valid:accuracy": "valid_accuracy",
    "epoch": "epoch",
}

METRIC_DEFINITIONS = [
    {"Name": name, "Regex": rf"METRICS .*\b{key}={_NUMBER}"} for name, key in _KEYS.items()
]

# HPO optimises validation accuracy; the test split is only ever read by the evaluation step.
OBJECTIVE_METRIC = "valid:accuracy"
OBJECTIVE_TYPE = "Maximize"
