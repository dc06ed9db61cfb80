"""The training and tuning jobs' entry file (the estimator's entry_point): dogbreed_jobs.train."""

import sys

from dogbreed_jobs.train import run

if __name__ == "__main__":
    sys.exit(run())
