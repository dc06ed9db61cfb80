"""Step caching: `<store>/cache/<step>/<sha256>.json`, keyed as SageMaker keys it.

The key is SageMaker's default cache key attributes of the step type (resolved), the
pipeline and step names, plus two local additions: the content hash of every input object
(new data at the same S3 URI is a miss, where SageMaker would hit), and the local options
that change a result (`--max-epochs`; for tuning also `--max-trials` and `--seed`). An
entry is used while younger than the step's `CacheConfig.ExpireAfter` and while the
outputs it points at are still in the store; otherwise the step runs again.

A definition whose cached attributes hold `Execution.PipelineExecutionId` (a per-execution
checkpoint URI, say) changes key on every run: such a step is never reused, locally as on
SageMaker.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

from dogbreed_jobs import contract
from pipeline.local.plan import Node
from pipeline.local.records import now, write_json
from pipeline.local.store import Store, join_uri

log = logging.getLogger("pipeline.local")

# SageMaker's default cache key attributes by step type; of a Tuning step's
# TrainingJobDefinition, only the children in TUNING_DEFINITION_KEYS count.
CACHE_KEYS = {
    "Processing": ("AppSpecification", "Environment", "ProcessingInputs"),
    "Training": (
        "AlgorithmSpecification",
        "CheckpointConfig",
        "DebugHookConfig",
        "DebugRuleConfigurations",
        "Environment",
        "HyperParameters",
        "InputDataConfig",
    ),
    "Tuning": ("HyperParameterTuningJobConfig", "TrainingJobDefinitions"),
}
TUNING_DEFINITION_KEYS = (
    "AlgorithmSpecification",
    "HyperParameterRanges",
    "InputDataConfig",
    "StaticHyperParameters",
    "TuningObjective",
)
_DURATION = re.compile(
    r"^P?(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$",
    re.IGNORECASE,
)


def parse_duration(text: str) -> timedelta | None:
    """ISO 8601 durations as CacheConfig.ExpireAfter takes them (P30D, PT1H, 30d, T16m)."""
    match = _DURATION.match((text or "").strip())
    if not text or not match or not any(match.groups()):
        return None
    years, months, weeks, days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return timedelta(
        days=365 * years + 30 * months + 7 * weeks + days,
        hours=hours,
        minutes=minutes,
        seconds=seconds,
    )


def _input_uris(node: Node, arguments: dict) -> list[str]:
    if node.type == "Processing":
        return [
            item["S3Input"]["S3Uri"]
            for item in arguments.get("ProcessingInputs") or []
            if item.get("S3Input")
        ]
    definition = arguments if node.type == "Training" else arguments.get("TrainingJobDefinition")
    return [
        channel["DataSource"]["S3DataSource"]["S3Uri"]
        for channel in (definition or {}).get("InputDataConfig") or []
        if channel.get("DataSource", {}).get("S3DataSource")
    ]


def _outputs(node: Node, arguments: dict, properties: dict, store: Store) -> list[str]:
    """The objects a cache hit hands on, which must still exist for the hit to count."""
    if node.type == "Processing":
        return [
            item["S3Output"]["S3Uri"]
            for item in (properties.get("ProcessingOutputConfig") or {}).get("Outputs", [])
            if item.get("S3Output") and store.exists(item["S3Output"]["S3Uri"])
        ]
    if node.type == "Training":
        return [properties["ModelArtifacts"]["S3ModelArtifacts"]]
    output = ((arguments.get("TrainingJobDefinition") or {}).get("OutputDataConfig") or {}).get(
        "S3OutputPath", ""
    )
    best = properties["BestTrainingJob"]["TrainingJobName"]
    return [join_uri(output, best, "output", contract.MODEL_ARCHIVE)]


class StepCache:
    def __init__(self, store: Store, pipeline: str, enabled: bool, local: dict):
        self.store = store
        self.pipeline = pipeline
        self.enabled = enabled
        # max_epochs, max_trials, seed: what each step type's key includes of them is below.
        self.local = local

    def key(self, node: Node, arguments: dict) -> str | None:
        """The step's cache key, or None when it is not cached (disabled, or not a job)."""
        config = node.step.get("CacheConfig") or {}
        if not (self.enabled and config.get("Enabled") and node.type in CACHE_KEYS):
            return None
        attributes = {key: arguments.get(key) for key in CACHE_KEYS[node.type]}
        local: dict = {}
        if node.type == "Training":
            local = {"max_epochs": self.local.get("max_epochs")}
        elif node.type == "Tuning":
            definition = arguments.get("TrainingJobDefinition") or {}
            attributes["TrainingJobDefinition"] = {
                key: definition.get(key) for key in TUNING_DEFINITION_KEYS
            }
            local = {
                "max_epochs": self.local.get("max_epochs"),
                "max_trials": self.local.get("max_trials"),
                "seed": self.local.get("seed"),
                "strategy": "random",
            }
        material = {
            "Pipeline": self.pipeline,
            "Step": node.name,
            "Type": node.type,
            "Attributes": attributes,
            "InputDigests": {uri: self.store.digest(uri) for uri in _input_uris(node, arguments)},
            "Local": local,
        }
        return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()

    def _path(self, node: Node, key: str) -> Path:
        return self.store.cache / node.name / f"{key}.json"

    def lookup(self, node: Node, key: str | None) -> dict | None:
        """The usable entry for `key`: {PipelineExecutionArn, Properties, Extra, ...}."""
        if key is None:
            return None
        path = self._path(node, key)
        if not path.is_file():
            return None
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            created = datetime.fromisoformat(entry["CreationTime"])
        except (ValueError, KeyError):
            log.warning("[%s] unreadable cache entry %s: running the step", node.name, path)
            return None
        expire = parse_duration((node.step.get("CacheConfig") or {}).get("ExpireAfter", ""))
        if expire is not None and datetime.now(timezone.utc) - created > expire:
            log.info("[%s] the cache entry of %s has expired", node.name, entry["CreationTime"])
            return None
        missing = [uri for uri in entry.get("Outputs", []) if not self.store.exists(uri)]
        if missing:
            log.info("[%s] cached outputs are gone (%s): running again", node.name, missing[0])
            return None
        return entry

    def save(
        self,
        node: Node,
        key: str | None,
        arguments: dict,
        properties: dict,
        extra: dict,
        execution_arn: str,
    ) -> None:
        if key is None:
            return
        entry = {
            "PipelineExecutionArn": execution_arn,
            "StepName": node.name,
            "CreationTime": now(),
            "Properties": properties,
            "Extra": extra,
            "Outputs": _outputs(node, arguments, properties, self.store),
        }
        write_json(self._path(node, key), entry)
