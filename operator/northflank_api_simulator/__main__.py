"""``python -m northflank_api_simulator``."""

import sys

from northflank_api_simulator.cli import main

sys.exit(main())
