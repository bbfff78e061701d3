"""``python -m trio_rsocket._bench``: the same program as ``trio-rsocket bench``."""

import sys

from .cli import main

sys.exit(main())
