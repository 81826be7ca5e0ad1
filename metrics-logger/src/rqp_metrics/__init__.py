"""rqp-metrics-logger: VM health recorded by rqp itself, without third-party VM extensions.

Two sources feed one sample format: Azure Monitor (every VM of a resource group, Reader rights
only) and the host's own counters (psutil, any Linux VM in any cloud or none). Samples go to the
configured blob store as JSON Lines; ``rqp metrics report`` turns them into pictures.
"""

from .sample import Sample
from .settings import MetricsSettings

__version__ = "0.1.0"

__all__ = ["MetricsSettings", "Sample", "__version__"]
