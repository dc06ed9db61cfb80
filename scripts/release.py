"""The entry file of the DeployEndpoint job (`python3 <code>/release.py`).

The code is dogbreed_jobs.release.
"""

import sys

from dogbreed_jobs.release import main

if __name__ == "__main__":
    sys.exit(main())
