"""Helpers for the deployment and logging tests: a private install of qpsmtpd.py.

`private_install(config)` makes a directory (mode 0755, so `nobody` can
enter it) holding a copy of qpsmtpd.py, symlinks to the real lib/ and
plugins/, and a config/ with exactly the given files, so the shipped
config/ never leaks into a test.  `run_pipe()` runs one session of the real
program over pipes and returns what the client and stderr saw.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from qpsmtpd.testing import make_install

REPO = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"


def private_install(config: dict[str, str | list[str]], owner: str | None = None) -> Path:
    """A throw-away runnable install; `owner` gets the spool dir (for servers run as that user)."""
    base = Path(make_install({"me": "mx.example.test", **config}, runnable=True))
    spool = base / "spool"  # make_install's default spool_dir
    spool.mkdir(mode=0o700)
    spool.chmod(0o700)
    if owner:
        user = pwd.getpwnam(owner)
        os.chown(spool, user.pw_uid, user.pw_gid)
    return base


def remove_install(base: Path) -> None:
    if os.environ.get("COMPONENTS_KEEP") != "1":
        shutil.rmtree(base, ignore_errors=True)


@dataclass
class PipeResult:
    pid: int
    returncode: int
    stdout: bytes
    stderr: bytes

    def replies(self) -> list[str]:
        return [line for line in self.stdout.decode("utf-8", "replace").split("\r\n") if line]

    def codes(self) -> list[int]:
        return [int(line[:3]) for line in self.replies() if line[3:4] == " "]

    def log_lines(self) -> list[str]:
        return self.stderr.decode("utf-8", "replace").splitlines()


def run_pipe(install: Path, commands: list[str] | bytes, env: dict[str, str] | None = None,
             python: str = sys.executable, timeout: float = 20) -> PipeResult:
    """One session of `install/qpsmtpd.py` with stdin/stdout/stderr as pipes."""
    data = commands if isinstance(commands, bytes) else "".join(c + "\r\n" for c in commands).encode()
    full_env = {key: value for key, value in os.environ.items()
                if not key.startswith("TCP") and key not in ("RELAYCLIENT", "QPSMTPD_CONFIG")}
    full_env.update(env or {})
    proc = subprocess.Popen([python, str(install / "qpsmtpd.py")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env)
    out, err = proc.communicate(data, timeout=timeout)
    return PipeResult(proc.pid, proc.returncode, out, err)


MESSAGE = ["DATA", "Subject: test", "", "body line", "."]


def mail_session(rcpt: str = "x@example.test", count: int = 1) -> list[str]:
    """EHLO, `count` messages to `rcpt`, QUIT."""
    lines = ["EHLO client.test"]
    for n in range(count):
        lines += [f"MAIL FROM:<s{n}@sender.test>", f"RCPT TO:<{rcpt}>", *MESSAGE]
    return lines + ["QUIT"]
