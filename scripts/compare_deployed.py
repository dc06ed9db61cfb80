"""The entry file of the CompareWithDeployed job (`python3 <code>/compare_deployed.py`).

The code is dogbreed_jobs.compare_deployed.
"""

import sys

from dogbreed_jobs.compare_deployed import main

if __name__ == "__main__":
    sys.exit(main())
