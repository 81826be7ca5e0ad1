"""Fixtures of the metrics logger's tests: the Azure stub, a file blob store, a fixed clock."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from rqp.storage import FileBlobStore
from rqp_metrics.sources.azure import AzureSource
from rqp_metrics.store import SampleStore

from .stub_azure import AzureStub, FakeCredential


@pytest.fixture
def stub():
    s = AzureStub().start()
    yield s
    s.stop()


@pytest.fixture
def now() -> datetime:
    """A recent whole minute plus 30 s: Azure points are minute-aligned, reports look back from now."""
    return datetime.now(timezone.utc).replace(second=30, microsecond=0)


@pytest.fixture
def azure_source(stub, now):
    def make(lookback: float = 300.0, clock=None) -> AzureSource:
        return AzureSource(
            stub.subscription,
            stub.resource_group,
            credential=FakeCredential(),
            base_url=stub.url,
            lookback=lookback,
            clock=clock or (lambda: now),
        )

    made: list[AzureSource] = []

    def factory(**kw) -> AzureSource:
        src = make(**kw)
        made.append(src)
        return src

    yield factory
    for s in made:
        s.close()


@pytest.fixture
def blob_store(tmp_path) -> FileBlobStore:
    return FileBlobStore(tmp_path / "blobs")


@pytest.fixture
def sample_store(blob_store) -> SampleStore:
    return SampleStore(blob_store)
