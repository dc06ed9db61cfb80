"""The environment that makes a job log to MLflow (dogbreed_jobs.tracking reads it).

One function for both back ends: the definition (`--mlflow-tracking-arn`) fills it with
pipeline variables (the MlflowTrackingUri parameter, the execution id), run-local fills it
with an execution's values for a definition that has none.
"""

from __future__ import annotations

from dogbreed_jobs import contract


def job_environment(
    uri, experiment: str, execution_id, step_name: str, code_bundle: str, image, tuning=False
) -> dict:
    """The variables of one step's jobs; `tuning`: its jobs are the trials of a tuning step."""
    env = {
        contract.TRACKING_URI_ENV: uri,
        contract.EXPERIMENT_ENV: experiment,
        contract.EXECUTION_ID_ENV: execution_id,
        contract.STEP_NAME_ENV: step_name,
        contract.CODE_BUNDLE_ENV: code_bundle,
        contract.IMAGE_ENV: image,
    }
    if tuning:
        env[contract.STEP_TYPE_ENV] = contract.TUNING_STEP_TYPE
    return env
