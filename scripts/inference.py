"""The endpoint's entry file: the serving container imports `code/inference.py` (code/ on
sys.path) and calls these handlers; they live in dogbreed_jobs.inference."""

from dogbreed_jobs.inference import input_fn, model_fn, output_fn, predict_fn

__all__ = ["input_fn", "model_fn", "output_fn", "predict_fn"]
