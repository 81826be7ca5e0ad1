"""Where samples come from. Each source's ``collect()`` returns what it could read plus a warning
for what it could not: one missing VM or metric never costs the samples of the others."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ..sample import Sample

__all__ = ["Collection", "Source"]


@dataclass
class Collection:
    samples: list[Sample] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def extend(self, other: Collection) -> None:
        self.samples.extend(other.samples)
        self.warnings.extend(other.warnings)


class Source(Protocol):
    name: str

    def collect(self) -> Collection: ...

    def close(self) -> None: ...
