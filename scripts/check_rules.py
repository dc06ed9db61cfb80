"""The entry file of the Debugger rules step (`python3 <code>/check_rules.py`).

The code is dogbreed_jobs.check_rules.
"""

import sys

from dogbreed_jobs.check_rules import main

if __name__ == "__main__":
    sys.exit(main())
