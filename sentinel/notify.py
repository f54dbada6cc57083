"""The systemd notify protocol (sd_notify), without libsystemd.

systemd passes ``$NOTIFY_SOCKET`` (a path, or ``@name`` for an abstract
socket) and, with ``WatchdogSec=``, ``$WATCHDOG_USEC``. Without them every call
is a no-op, so the daemon runs the same under systemd and in a terminal.
"""

from __future__ import annotations

import os
import socket

#: How long one notification may wait for room in the notify socket's queue.
SEND_WAIT = 0.1


class Notifier:
    """Sends ``READY=1``, ``WATCHDOG=1``, ``STOPPING=1``, ``STATUS=…`` datagrams."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = environ if environ is not None else dict(os.environ)
        addr = env.get("NOTIFY_SOCKET", "")
        self._addr: str | None = None
        if addr.startswith("@"):
            self._addr = "\0" + addr[1:]
        elif addr.startswith("/"):
            self._addr = addr
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        ours = not pid or pid == str(os.getpid())
        #: seconds between WATCHDOG=1 pings (half the timeout), or None
        self.watchdog_interval: float | None = (
            int(usec) / 2e6 if usec.isdigit() and int(usec) > 0 and ours else None
        )

    @property
    def enabled(self) -> bool:
        return self._addr is not None

    def send(self, *states: str) -> bool:
        """Send one datagram of newline-separated states; False if it could not go.

        Waits at most ``SEND_WAIT`` for room: a datagram socket whose reader has fallen
        behind (its queue holds ``net.unix.max_dgram_qlen`` datagrams, 10 by default)
        blocks the sender, and the main loop that pings the watchdog must never hang
        on it. A ping that could not go is tried again at the next interval; if none
        can, systemd's watchdog restarts sentinel, which is what it is for.
        """
        if self._addr is None:
            return False
        msg = "\n".join(states).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.settimeout(SEND_WAIT)
                s.sendto(msg, self._addr)
        except OSError:  # TimeoutError included
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def reloading(self) -> bool:
        return self.send("RELOADING=1")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")
