"""One client connection: addresses, HELO, relay status and notes."""

from __future__ import annotations

import os
import time

from .notes import Notes


class Connection:
    """What is known about the client for the whole session."""

    def __init__(self) -> None:
        # `<connect time>.<pid>`: unique on this host, names the connection in log lines
        self.id: str = f"{int(time.time())}.{os.getpid()}"
        self.remote_ip: str = ""
        self.remote_host: str = ""
        self.remote_info: str = ""
        self.remote_port: str = ""
        self.local_ip: str = ""
        self.local_host: str = ""
        self.local_port: str = ""
        self.relay_client: bool | str = False
        self.hello: str = ""          # "helo" or "ehlo" once accepted
        self.hello_host: str = ""
        self.notes = Notes()

    def start(self, **info: str) -> Connection:
        for key, value in info.items():
            if value is not None:
                setattr(self, key, value)
        return self

    def reset(self) -> None:
        self.notes = Notes()
