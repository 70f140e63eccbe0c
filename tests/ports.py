"""Free TCP ports on 127.0.0.1 for the servers a test starts, several at once.

Linux may hand a port just closed out again, so ports chosen one after another, each socket closed before the next
bind, can repeat (CI once saw Prometheus given the operator's metrics port). Held open together, they are distinct.
"""

from __future__ import annotations

import contextlib
import socket


def free_ports(n: int) -> list[int]:
    """`n` distinct ports free right now (a server binds each moments later)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
