"""Loopback ports for rigs and tests that must tell a server which port to bind before it starts.

`bind(0)` hands out a port from the kernel's ephemeral range, the same range every outgoing
connection draws its local port from: between choosing the port and the server binding it, a
client socket of the same machine (a test's HTTP session, a ccxt request) can take it, and the
server fails with EADDRINUSE. Ports below the ephemeral range are never taken that way, and one
process never hands out the same port twice, so two servers of one run cannot collide either.
"""

from __future__ import annotations

import os
import random
import socket
import threading

_LOWEST = 15000
_given: set[int] = set()
_lock = threading.Lock()
_rng = random.Random(os.getpid() ^ int.from_bytes(os.urandom(4), "big"))


def _ephemeral_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int, host: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nothing listens on now and that this process has not handed out."""
    top = _ephemeral_start()
    with _lock:
        if top - _LOWEST > 1000:
            for _ in range(500):
                port = _rng.randrange(_LOWEST, top)
                if port not in _given and _bindable(port, host):
                    _given.add(port)
                    return port
        # No room below the ephemeral range (an unusual kernel setting): let the kernel choose.
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((host, 0))
                port = sock.getsockname()[1]
            if port not in _given:
                _given.add(port)
                return port
