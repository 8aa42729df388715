"""Helpers for the tests of the state layer and its plugins (greylisting, karma, rate_limit).

* `Clock`: the time the test controls (it replaces `qpsmtpd.state.clock`).
* `Backend`: where a plugin keeps its state in a test — a private local
  store directory, or the real redis-server of `t/components.redis_server`
  — and the plugin arguments that select it.
* `session(...)`: one in-process SMTP session (the real engine).
* `spawn_session(...)`: one real `qpsmtpd.py` process (for concurrency).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field

from qpsmtpd import state
from qpsmtpd.testing import SessionResult, make_install, run_session

START = 1_800_000_000.0  # a fixed, whole-hour moment for the controlled clock


class Clock:
    """A clock the test moves by hand; `install()` makes the state layer read it."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Backend:
    """A place for plugin state: `kind` "local" (db_dir) or "redis" (server)."""

    kind: str
    db_dir: str = ""
    server: str = ""
    redis_port: int = 0
    extra: dict = field(default_factory=dict)

    def args(self) -> str:
        """The plugin arguments selecting this backend."""
        return f"db_dir {self.db_dir}" if self.kind == "local" else f"redis {self.server}"

    def store(self, namespace: str) -> state.Store:
        if self.kind == "local":
            return state.LocalStore(os.path.join(self.db_dir, state.LOCAL_FILE), namespace, 2.0)
        return state.RedisStore(self.server, namespace, 2.0)


def flush_redis(port: int) -> None:
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
    client.flushall()
    client.close()


def base_config(plugins: list[str], **extra: list[str]) -> dict:
    return {"me": ["mx.example.test"], "rcpthosts": ["example.test"], "loglevel": ["7"],
            "plugins": plugins, **extra}


def session(lines: list[str], plugins: list[str], ip: str = "192.0.2.1", **extra: list[str]) -> SessionResult:
    """One in-process session from `ip` with `plugins` (rcpt_ok appended) and a capturing queue."""
    config = base_config([*plugins, "rcpt_ok"], **extra)
    return run_session(lines, config=config, capture_queue=True,
                       connection={"remote_ip": ip, "remote_host": f"[{ip}]", "remote_info": f"[{ip}]"})


def log_lines(result: SessionResult, word: str) -> list[str]:
    return [line for line in result.log if word in line]


MAIL_ONLY = ["HELO client.test", "MAIL FROM:<a@sender.test>", "QUIT"]
ONE_MESSAGE = ["HELO client.test", "MAIL FROM:<a@sender.test>", "RCPT TO:<x@example.test>", "DATA",
               "Subject: hi", "", "hello", ".", "QUIT"]


def runnable_install(plugins: list[str], **extra: list[str]) -> str:
    return make_install(base_config(plugins, **extra), runnable=True)


def spawn_session(install: str, lines: list[str], ip: str = "192.0.2.1") -> subprocess.Popen:
    """Start a real qpsmtpd.py process as tcpserver would (the dialogue is written by the caller)."""
    env = {"PATH": "/usr/bin:/bin", "TCPREMOTEIP": ip, "TCPLOCALIP": "127.0.0.1", "TCPLOCALPORT": "25",
           "HOME": install}
    return subprocess.Popen([sys.executable, os.path.join(install, "qpsmtpd.py")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=install)


def dialogue(lines: list[str]) -> bytes:
    return b"".join(line.encode() + b"\r\n" for line in lines)


def reply_codes(output: bytes) -> list[int]:
    codes = []
    for line in output.decode("utf-8", "replace").split("\r\n"):
        if len(line) >= 4 and line[:3].isdigit() and line[3] == " ":
            codes.append(int(line[:3]))
    return codes


# -- fixtures (import them by name into a test module) ---------------------------------
import pytest  # noqa: E402


@pytest.fixture(scope="module")
def redis_daemon():
    """A private redis-server for the module (127.0.0.1, free port, no persistence)."""
    from components import redis_server

    with redis_server() as daemon:
        yield daemon


@pytest.fixture
def clock(monkeypatch):
    """The controlled clock; also forgets Redis servers marked down by an earlier test."""
    controlled = Clock()
    monkeypatch.setattr(state, "clock", controlled)
    forget_process_state()
    yield controlled
    forget_process_state()


def forget_process_state() -> None:
    """What one qpsmtpd process keeps (open files, servers marked down); tests share a process."""
    state._down.clear()
    for db in state._open_dbs.values():
        db.close()
    state._open_dbs.clear()


@pytest.fixture(params=["local", pytest.param("redis", marks=pytest.mark.components)])
def backend(request, tmp_path):
    """Each test runs on the local store and on a real Redis."""
    if request.param == "local":
        directory = tmp_path / "db"
        directory.mkdir()
        return Backend("local", db_dir=str(directory))
    daemon = request.getfixturevalue("redis_daemon")
    flush_redis(daemon.port)
    return Backend("redis", server=f"127.0.0.1:{daemon.port}", redis_port=daemon.port)
