"""The entry file of the evaluation job (`python3 <code>/evaluate.py`): dogbreed_jobs.evaluate."""

from dogbreed_jobs.evaluate import main

if __name__ == "__main__":
    main()
