"""Helpers for the content-scanner tests (spamassassin, virus/clamdscan, virus/clamav).

`scan_session` runs one in-process SMTP session with the given plugins and a
probe plugin that logs, just before queueing, the notes other plugins read.
The misbehaving peers below (`silent_listener`, `scripted_peer`) are written
in the tests because no real spamd or clamd can be made to stay silent,
answer garbage or stop mid-answer on demand; `frozen`/`kill_all` do that
to the real daemons where a real process can.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from components import processes
from qpsmtpd.testing import REPO_DIR, run_session

PROBE = '''
import json
from qpsmtpd.constants import DECLINED, LOGINFO


def hook_queue_pre(self, transaction):
    notes = {"spamassassin": transaction.notes.get("spamassassin"),
             "karma": self.connection.notes.get("karma"),
             "naughty": self.connection.notes.get("naughty")}
    self.log(LOGINFO, "PROBE " + json.dumps(notes, default=str))
    return DECLINED
'''


@dataclass
class Outcome:
    replies: list[tuple[int, list[str]]]
    log: list[str]
    queued: list[bytes]
    seconds: float
    notes: dict = field(default_factory=dict)

    @property
    def final(self) -> str:
        """The reply to the end of DATA, as `code text`."""
        code, lines = self.replies[-2]
        return f"{code} {' '.join(lines)}"

    def lines_of(self, plugin: str) -> list[str]:
        return [line for line in self.log if f" {plugin}:" in line]

    def header(self, index: int = 0) -> str:
        return self.queued[index].split(b"\n\n", 1)[0].decode("utf-8", "replace")


def message(body: str | list[str], subject: str = "lunch", extra: list[str] | None = None) -> list[str]:
    """Header lines (Date and Message-ID, so a plain body scores as ham) and the body."""
    body_lines = body if isinstance(body, list) else body.split("\n")
    return ["From: Alice <alice@sender.test>", "To: bob@example.test", f"Subject: {subject}",
            "Date: Wed, 25 Nov 2026 17:00:00 +0000", "Message-ID: <m1.20261125@sender.test>",
            *(extra or []), "", *body_lines]


HAM = "Hello Bob,\nshall we have lunch tomorrow at noon?\nAlice"


def scan_session(plugins: list[str], lines: list[str], recipients: tuple[str, ...] = ("bob@example.test",),
                 remote_ip: str = "127.0.0.1", config: dict | None = None, sender: str = "alice@sender.test",
                 extra_plugins: dict[str, str] | None = None) -> Outcome:
    """One session; `extra_plugins` are more plugin files (name -> source) the config may list."""
    probe_dir = tempfile.mkdtemp(prefix="scanner-probe-")
    Path(probe_dir, "probe.py").write_text(PROBE)
    for name, source in (extra_plugins or {}).items():
        Path(probe_dir, name + ".py").write_text(source)
    script = ["HELO client.test", f"MAIL FROM:<{sender}>", *[f"RCPT TO:<{rcpt}>" for rcpt in recipients],
              "DATA", *[("." + line if line.startswith(".") else line) for line in lines], ".", "QUIT"]
    settings = {"plugins": [*plugins, "probe", "rcpt_ok"], "rcpthosts": ["example.test"], "loglevel": ["7"],
                "me": ["mx.example.test"], **(config or {})}
    started = time.monotonic()
    result = run_session(script, config=settings, capture_queue=True,
                         plugin_dirs=[probe_dir, os.path.join(REPO_DIR, "plugins")],
                         connection={"remote_ip": remote_ip})
    seconds = time.monotonic() - started
    notes = {}
    for line in result.log:
        if " PROBE " in line:
            notes = json.loads(line.split(" PROBE ", 1)[1])
    assert not any("Traceback" in line for line in result.log), result.log
    return Outcome(result.replies(), result.log, [item.message for item in result.queued], seconds, notes)


# -- misbehaving peers ----------------------------------------------------------

@contextlib.contextmanager
def silent_listener():
    """A TCP port that accepts connections (the kernel's backlog) and never says a word."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"127.0.0.1:{server.getsockname()[1]}"


@contextlib.contextmanager
def scripted_peer(answer, until=None, unix_path: str | None = None, trickle: float = 0.0):
    """A one-answer server: per connection, read the request (up to the client's
    end of sending, or until `until` -- bytes, or a test of what was read --
    is found), send `answer` (bytes, or a function of the request), close.
    With `trickle`, the answer goes out one byte every `trickle` seconds.

    Yields the address (`127.0.0.1:port`, or the unix socket path).
    """
    if isinstance(until, bytes):
        marker = until
        until = lambda received: marker in received  # noqa: E731
    respond = answer if callable(answer) else (lambda _request: answer)
    family = socket.AF_UNIX if unix_path else socket.AF_INET
    server = socket.socket(family, socket.SOCK_STREAM)
    server.bind(unix_path or ("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    received = b""
                    while until is None or not until(received):
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        received += chunk
                    reply = respond(received)
                    if not trickle:
                        conn.sendall(reply)
                    for index in range(len(reply) if trickle else 0):
                        if stop.is_set():
                            break
                        conn.sendall(reply[index:index + 1])
                        time.sleep(trickle)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield unix_path or f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(2)
        server.close()


# -- the real daemons, misbehaving ------------------------------------------------

def family(pid: int) -> list[int]:
    """`pid` and all its descendants (spamd forks its workers)."""
    members = [pid]
    for info in processes():
        if info.ppid in members and info.pid not in members:
            members.append(info.pid)
    return members


def signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def run_while_killing(daemon, session, delay: float = 0.5) -> Outcome:
    """Freeze the daemon (it accepts, reads nothing, answers nothing), run `session`,
    and kill the daemon with SIGKILL `delay` seconds later: it dies with our request pending.

    The session runs in this (main) thread: the engine's time limits use SIGALRM.
    """
    pids = family(daemon.pid)
    signal_all(pids, signal.SIGSTOP)
    killer = threading.Timer(delay, signal_all, (pids, signal.SIGKILL))
    killer.start()
    try:
        return session()
    finally:
        killer.join(10)
