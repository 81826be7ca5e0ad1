"""rqp processor: executes chunks of a workload's records with the workload's own script."""

from .chunk import ChunkProcessor
from .context import ContextCache, WorkloadContext

__all__ = ["ChunkProcessor", "ContextCache", "WorkloadContext"]
