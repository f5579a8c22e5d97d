"""main.py --fd: the launcher's socket is used only if it is what the command line says."""

from __future__ import annotations

import os
import socket

import pytest

from product_mcp.core.serve import inherited


def test_a_socket_bound_to_the_named_address_is_taken() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        sock = inherited(os.dup(held.fileno()), "127.0.0.1", port)
        try:
            assert sock.getsockname() == ("127.0.0.1", port)
        finally:
            sock.close()


def test_a_wrong_descriptor_is_refused_in_words() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        with pytest.raises(SystemExit, match=f"not a TCP socket bound to 127.0.0.1:{port + 1}"):
            inherited(os.dup(held.fileno()), "127.0.0.1", port + 1)
    read, write = os.pipe()
    os.close(write)
    with pytest.raises(SystemExit, match=f"--fd {read}: not an open socket"):
        inherited(read, "127.0.0.1", 8083)
    os.close(read)
    with pytest.raises(SystemExit, match="--fd 1000000: not an open socket"):
        inherited(1_000_000, "127.0.0.1", 8083)
