"""Fixtures of the metrics logger's tests: the Azure stub, a file blob store, a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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
    """Half a minute past a recent minute, never in the future: Azure points are minute-aligned,
    and reports (which look back from the real now) must include samples stamped with it."""
    return datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(seconds=30)


@pytest.fixture
def azure_source(stub, now):
    def make(lookback: float = 300.0, clock=None, **kw) -> AzureSource:
        return AzureSource(
            stub.subscription,
            stub.resource_group,
            credential=FakeCredential(),
            base_url=stub.url,
            lookback=lookback,
            clock=clock or (lambda: now),
            **kw,
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
