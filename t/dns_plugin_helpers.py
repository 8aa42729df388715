"""Shared helpers for the DNS plugin tests: run a session against the test zone."""

from __future__ import annotations

from qpsmtpd.testing import SessionResult, run_session


def session(dns: str, plugins: list[str], lines: list[str], ip: str = "192.0.2.1",
            env: dict[str, str] | None = None, **config) -> SessionResult:
    config = {"plugins": plugins, "dns_servers": [dns], "me": "mx.example.test",
              "rcpthosts": ["example.test"], "loglevel": ["7"], **config}
    return run_session(lines, config=config, connection={"remote_ip": ip}, env=env, capture_queue=True)


def reply(result: SessionResult, index: int) -> str:
    code, lines = result.replies()[index]
    return f"{code} " + "|".join(lines)
