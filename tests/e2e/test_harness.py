"""The test harness's own promises that the suite's reliability rests on (tests/servers.py)."""

from __future__ import annotations

from tests.servers import _EPHEMERAL_LOW, free_port, port_pool


def test_each_worker_picks_ports_from_a_share_of_its_own() -> None:
    """Two xdist workers never pick the same port (one's pick could be taken before its
    service binds it), and no worker picks from the range outgoing connections use."""
    shares = [port_pool(w) for w in ["", "gw0", "gw1", "gw2", "gw3", "gw6"]]
    for i, a in enumerate(shares):
        assert len(a) >= 1000 and a.stop <= _EPHEMERAL_LOW
        for b in shares[i + 1 :]:
            assert not set(a) & set(b)
    assert port_pool("gw0") == port_pool("gw0")  # the same share every time
    assert free_port() in port_pool()
