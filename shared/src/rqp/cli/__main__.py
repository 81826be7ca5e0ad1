"""``python -m rqp.cli``: the same as ``rqp``."""

import sys

from . import main

sys.exit(main())
