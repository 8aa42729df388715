"""A harness to run SMTP sessions in-process, for our tests and for plugin writers.

    from qpsmtpd.testing import run_session
    result = run_session(
        ["HELO client.test", "MAIL FROM:<a@b.test>", "RCPT TO:<x@example.test>",
         "DATA", "Subject: hi", "", "body", ".", "QUIT"],
        config={"plugins": ["rcpt_ok"], "rcpthosts": ["example.test"]},
        capture_queue=True)
    assert result.codes() == [220, 250, 250, 250, 354, 250, 221]
    assert result.queued[0].recipients == ["x@example.test"]

The session runs the real engine over an in-memory transport with a
private install directory (its own `config/`; `plugins/` is the real one
unless `plugin_dirs` is given), so nothing of the shipped config leaks in.
`capture_queue=True` appends a queue plugin that keeps each message
(envelope + exact bytes) in `result.queued` and answers 250.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any, Iterable

from .constants import OK
from .plugin import Plugin
from .reader import SmtpIO
from .smtp import SMTP

REPO_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CAPTURE_PLUGIN = "qpsmtpd.testing"


class ScriptedTransport:
    """Feeds scripted client input; collects everything the server writes."""

    def __init__(self, data: bytes, chunk_size: int = 1 << 20) -> None:
        self.data = data
        self.pos = 0
        self.chunk_size = chunk_size
        self.output = bytearray()
        self.fd_in = -1

    def wait_readable(self, timeout: float | None) -> bool:
        return True

    def read(self, size: int = 65536) -> bytes:
        size = min(size, self.chunk_size)
        chunk = self.data[self.pos:self.pos + size]
        self.pos += len(chunk)
        return chunk

    def write(self, data: bytes) -> None:
        self.output += data

    def pending(self) -> bool:
        return self.pos < len(self.data)


@dataclass
class QueuedMessage:
    sender: str
    recipients: list[str]
    message: bytes


@dataclass
class SessionResult:
    output: bytes
    log: list[str]
    queued: list[QueuedMessage] = field(default_factory=list)
    smtp: Any = None

    def replies(self) -> list[tuple[int, list[str]]]:
        """Each reply as (code, [text of each line])."""
        replies: list[tuple[int, list[str]]] = []
        current: list[str] = []
        for line in self.output.decode("utf-8", "replace").split("\r\n"):
            if len(line) < 3:
                continue
            current.append(line[4:])
            if line[3:4] != "-":
                replies.append((int(line[:3]), current))
                current = []
        return replies

    def codes(self) -> list[int]:
        return [code for code, _lines in self.replies()]

    def lines(self) -> list[str]:
        return [line for line in self.output.decode("utf-8", "replace").split("\r\n") if line]


class CaptureQueue(Plugin):
    """Queue plugin of the harness: keeps what a real backend would have received."""

    store: list[QueuedMessage] = []

    def hook_queue(self, transaction: Any) -> Any:
        message = b"".join(transaction.iter_message())
        type(self).store.append(QueuedMessage(
            sender=transaction.sender.address if transaction.sender else "",
            recipients=[rcpt.address for rcpt in transaction.recipients],
            message=message))
        return OK, "Queued! (test harness)"


def _as_input(lines: Iterable[str] | bytes | str) -> bytes:
    if isinstance(lines, bytes):
        return lines
    if isinstance(lines, str):
        return lines.encode("utf-8", "surrogateescape")
    return b"".join(line.encode("utf-8", "surrogateescape") + b"\r\n" for line in lines)


def make_install(config: dict[str, str | list[str]], plugin_dirs: list[str] | None = None,
                 runnable: bool = False) -> str:
    """A throw-away install dir (0755) whose config/ holds exactly `config`.

    `runnable=True` adds a copy of qpsmtpd.py and a link to lib/, so the real
    program can be started from it (it finds its config/ beside itself).
    """
    install = tempfile.mkdtemp(prefix="qpsmtpd-test-")
    os.chmod(install, 0o755)
    if runnable:
        import shutil

        shutil.copy(os.path.join(REPO_DIR, "qpsmtpd.py"), os.path.join(install, "qpsmtpd.py"))
        os.symlink(os.path.join(REPO_DIR, "lib"), os.path.join(install, "lib"))
    config_dir = os.path.join(install, "config")
    os.mkdir(config_dir)
    config = dict(config)
    config.setdefault("spool_dir", [os.path.join(install, "spool")])
    if plugin_dirs is not None:
        config.setdefault("plugin_dirs", plugin_dirs)
    else:
        os.symlink(os.path.join(REPO_DIR, "plugins"), os.path.join(install, "plugins"))
    for name, value in config.items():
        text = value if isinstance(value, str) else "\n".join(value) + "\n"
        path = os.path.join(config_dir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as handle:
            handle.write(text)
    return install


def run_session(lines: Iterable[str] | bytes | str, config: dict[str, str | list[str]] | None = None,
                plugin_dirs: list[str] | None = None, env: dict[str, str] | None = None,
                capture_queue: bool = False, chunk_size: int = 1 << 20,
                connection: dict[str, str] | None = None, keep_install: bool = False) -> SessionResult:
    """Run one whole session in this process and return what the client saw."""
    install = make_install(config or {}, plugin_dirs)
    saved_env = dict(os.environ)
    os.environ.pop("QPSMTPD_CONFIG", None)
    os.environ.update(env or {})
    transport = ScriptedTransport(_as_input(lines), chunk_size)
    smtp = SMTP(install, SmtpIO(transport))  # type: ignore[arg-type]
    log: list[str] = []
    smtp.log_sink = log.append
    smtp.connection.start(**{"remote_ip": "192.0.2.1", "remote_host": "[192.0.2.1]",
                             "remote_info": "[192.0.2.1]", "remote_port": "40000",
                             "local_ip": "192.0.2.25", "local_port": "25", **(connection or {})})
    CaptureQueue.store = []
    try:
        if smtp.start():
            if capture_queue:
                capture = CaptureQueue()
                capture._name = "queue::capture"
                capture._register(smtp, [])
                smtp.plugins.append(capture)
            smtp.run()
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        if not keep_install:
            shutil.rmtree(install, ignore_errors=True)
    return SessionResult(output=bytes(transport.output), log=log, queued=list(CaptureQueue.store), smtp=smtp)
