"""Orchestration side of dogbreed-pipeline: config, parameters, steps, export, CLI."""
