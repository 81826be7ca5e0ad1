"""The Python API: ``rqp.Client`` (and ``rqp.AsyncClient``) to submit workloads from code and
notebooks, and ``rqp.Workload`` handles to watch, stream, read and control them. The modules
behind it are private; the public names are re-exported from ``rqp``."""

from ._async import AsyncClient, AsyncWorkload
from ._client import Client
from ._handle import WaitTimeoutError, Workload
from ._status import WorkloadStatus
from ._streamed import StreamedLeaf, StreamedResult

__all__ = [
    "AsyncClient",
    "AsyncWorkload",
    "Client",
    "StreamedLeaf",
    "StreamedResult",
    "WaitTimeoutError",
    "Workload",
    "WorkloadStatus",
]
