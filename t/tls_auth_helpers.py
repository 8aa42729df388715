"""Helpers for the AUTH and TLS tests: a real qpsmtpd.py on a socket pair, a
capturing queue plugin, certificates and small SMTP client helpers."""

from __future__ import annotations

import base64
import os
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from sessionfile import write_config

TEST_DIR = Path(__file__).resolve().parent
REPO_DIR = TEST_DIR.parent
QPSMTPD = str(REPO_DIR / "qpsmtpd.py")
PYTHON = sys.executable

# A queue plugin for the tests: writes each message to <spool>/../queued/<n>.eml and answers 250.
CAPTURE_QUEUE = '''
import os
def hook_queue(self, transaction):
    directory = os.environ["CAPTURE_DIR"]
    count = len(os.listdir(directory))
    with open(os.path.join(directory, f"{count}.eml"), "wb") as handle:
        for block in transaction.iter_message():
            handle.write(block)
    return OK, "Queued (capture)"
'''


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


@dataclass
class Install:
    """A private config dir (and plugin dir with the capturing queue)."""

    base: Path
    config: dict
    env: dict = field(default_factory=dict)

    @property
    def config_dir(self) -> Path:
        return self.base / "config"

    @property
    def capture_dir(self) -> Path:
        return self.base / "queued"

    def environ(self) -> dict:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("TCP", "QPSMTPD", "RELAYCLIENT", "SMTPS"))}
        env.update({"QPSMTPD_CONFIG": str(self.config_dir), "CAPTURE_DIR": str(self.capture_dir)})
        env.update(self.env)
        return env

    def queued(self) -> list[bytes]:
        return [(self.capture_dir / name).read_bytes()
                for name in sorted(os.listdir(self.capture_dir), key=lambda n: int(n.split(".")[0]))]

    def cleanup(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


def make_install(config: dict, env: dict | None = None) -> Install:
    base = Path(tempfile.mkdtemp(prefix="qpsmtpd-authtls-"))
    base.chmod(0o755)
    (base / "plugins" / "queue").mkdir(parents=True)
    (base / "plugins" / "queue" / "capture.py").write_text(CAPTURE_QUEUE)
    (base / "queued").mkdir()
    full = {"me": "mx.example.test", "spool_dir": str(base / "spool"),
            "plugin_dirs": [str(base / "plugins"), str(REPO_DIR / "plugins")], **config}
    write_config(str(base / "config"), full, str(base))  # shields the shipped config/ too
    return Install(base, full, env or {})


def spawn_on_socketpair(install: Install) -> tuple[socket.socket, subprocess.Popen]:
    """qpsmtpd.py with one end of a socket pair as fds 0 and 1; returns our end."""
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen([PYTHON, QPSMTPD], stdin=theirs, stdout=theirs, stderr=subprocess.PIPE,
                            env=install.environ(), cwd=install.base)
    theirs.close()
    return ours, proc


def smtp_on_socket(sock: socket.socket, host: str = "localhost", timeout: float = 10.0) -> smtplib.SMTP:
    """An smtplib client on an already connected socket (greeting read)."""
    sock.settimeout(timeout)
    client = smtplib.SMTP(timeout=timeout)
    client.sock = sock
    client._host = host
    code, message = client.getreply()
    assert code == 220, (code, message)
    return client


def finish(proc: subprocess.Popen, timeout: float = 10.0) -> str:
    """Wait for the server process; its stderr (must hold no traceback)."""
    try:
        _out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _out, err = proc.communicate()
        raise AssertionError("qpsmtpd did not exit: " + err.decode(errors="replace"))
    text = err.decode(errors="replace")
    assert "Traceback" not in text, text
    return text
