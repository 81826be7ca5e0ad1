"""``python -m rqp_metrics`` is ``rqp-metrics-logger``."""

from .cli import main

raise SystemExit(main())
