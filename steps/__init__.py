"""One step factory per module: each returns a SageMaker Pipelines step."""
