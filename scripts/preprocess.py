"""The entry file of the data preparation job (`python3 <code>/preprocess.py`).

The code is dogbreed_jobs.preprocess.
"""

import sys

from dogbreed_jobs.preprocess import main

if __name__ == "__main__":
    sys.exit(main())
