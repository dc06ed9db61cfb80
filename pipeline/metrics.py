"""Metric regexes SageMaker applies to the training logs, and the tuning objective.

They match the METRICS line that dogbreed_jobs/contract.py formats for train.py:
`METRICS epoch=3 train_loss=1.234567 train_accuracy=0.61 valid_loss=1.3 valid_accuracy=0.58`.
"""

from dogbreed_jobs import contract

# SageMaker metric name -> key printed on the METRICS line (Studio shows the names).
_NAMES = {
    "train_loss": "train:loss",
    "train_accuracy": "train:accuracy",
    "valid_loss": "valid:loss",
    "valid_accuracy": "valid:accuracy",
    "epoch": "epoch",
}

METRIC_DEFINITIONS = [
    {"Name": _NAMES[key], "Regex": contract.metric_regex(key)}
    for key in contract.TRAINING_METRIC_KEYS
]

# HPO optimises validation accuracy; the test split is only ever read by the evaluation step.
OBJECTIVE_METRIC = "valid:accuracy"
OBJECTIVE_TYPE = "Maximize"
