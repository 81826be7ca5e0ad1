"""A Redis that vanishes without a word (its VM powered off or cut off from the LAN: packets
dropped, no reset) must be given up on within seconds, so a client asks the Sentinels again and
follows the failover. Before, a pooled connection to such a primary waited out the 30 s read
timeout (or the kernel's keepalive defaults, hours) -- `tools/test-vms-ha.sh` saw a processor VM
stop for minutes after the primary's VM was killed. The options are read back from the socket of
a live connection to a real Redis."""

from __future__ import annotations

import socket

import pytest

from rqp.config import Settings
from rqp.connect import REDIS_DEAD_PEER_SECONDS, connect_redis


@pytest.mark.skipif(not hasattr(socket, "TCP_USER_TIMEOUT"), reason="Linux socket options")
def test_a_redis_connection_notices_a_silent_peer_within_seconds(redis_url):
    client = connect_redis(Settings.from_mapping({"redis_url": redis_url, "allow_insecure_redis": True}), check=False)
    try:
        client.ping()
        conn = client.connection_pool.get_connection()
        try:
            sock = conn._sock
            assert sock is not None
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            user_timeout = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)
            assert user_timeout == REDIS_DEAD_PEER_SECONDS * 1000
            idle = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)
            interval = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL)
            count = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT)
            # an idle connection to a vanished peer is dropped within the same few seconds
            assert idle + interval * count <= REDIS_DEAD_PEER_SECONDS
        finally:
            client.connection_pool.release(conn)
    finally:
        client.close()
