"""What the console's pages read from and write to: one ``Console``, built once at start
(``cli.build``) and shared by every blueprint of the application (``app.create_app``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import redis

from rqp.config import Settings
from rqp.signing import SigningKey, TrustStore
from rqp.storage import MessageQueue
from rqp_metrics.store import SampleStore

from .cache import TtlCache
from .sealed import Opener
from .settings import ConsoleSettings
from .throughput import ThroughputHistory
from .workload_page import ManifestTimes

__all__ = ["Console"]


@dataclass
class Console:
    """The console's clients and memory; the two Redis identities are kept apart on purpose."""

    settings: Settings
    console: ConsoleSettings
    #: the read-only Redis identity: everything but the actions
    r: redis.Redis
    #: the actions identity; None: the console is read-only
    actions: redis.Redis | None = None
    samples: SampleStore | None = None
    mq: MessageQueue | None = None
    opener: Opener | None = None
    manifests: ManifestTimes = field(default_factory=lambda: ManifestTimes(None))
    history: ThroughputHistory = field(default_factory=ThroughputHistory)
    cache: TtlCache = field(default_factory=TtlCache)
    #: the console's operator key that signs actions; None: actions are refused
    signer: SigningKey | None = None
    #: whose audit entries verify: the trusted operators and the trusted signers (submitters)
    operators: TrustStore | None = None
    submitters: TrustStore | None = None
