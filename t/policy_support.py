"""Shared helpers for the policy plugin tests (t/test_plugin_*.py)."""

from __future__ import annotations

from typing import Any

from qpsmtpd.testing import SessionResult, run_session

BASE = {"me": "mx.example.test", "rcpthosts": ["example.test"]}
HELO = ["HELO client.test"]
MAIL = HELO + ["MAIL FROM:<a@b.test>"]
RCPT = MAIL + ["RCPT TO:<x@example.test>"]
BODY = ["From: a@b.test", "Subject: hi", "", "body", "."]
DATA = RCPT + ["DATA"] + BODY


def session(plugins: list[str], lines: list[str], quit: bool = True, capture: bool = True,
            **config: Any) -> SessionResult:
    """Run `lines` (+ QUIT) with `plugins` then rcpt_ok, and the base config plus `config`."""
    files = dict(BASE)
    files.update({name.replace("__", "/"): value for name, value in config.pop("files", {}).items()})
    files.update(config)
    files["plugins"] = list(plugins) + (["rcpt_ok"] if "rcpt_ok" not in " ".join(plugins) else [])
    return run_session(lines + (["QUIT"] if quit else []), capture_queue=capture,
                       **_split_run_args(files))


def _split_run_args(files: dict[str, Any]) -> dict[str, Any]:
    run_args = {}
    for key in ("env", "connection"):
        if key in files:
            run_args[key] = files.pop(key)
    run_args["config"] = files
    return run_args


def replies(result: SessionResult) -> list[str]:
    """Each reply as 'code text' (multi-line replies joined with ' | ')."""
    return [f"{code} {' | '.join(lines)}" for code, lines in result.replies()]


def log_has(result: SessionResult, text: str) -> bool:
    return any(text in line for line in result.log)


def load_plugin(line: str, hook: str = "connect", **config: Any):
    """A registered plugin instance (real loader, private install) for calling its methods."""
    from qpsmtpd.qp import Qpsmtpd
    from qpsmtpd.testing import make_install

    qp = Qpsmtpd(make_install(dict(BASE, **config)))
    qp.log_sink = lambda line: None
    qp.connection.start(remote_ip="192.0.2.1", remote_host="[192.0.2.1]", remote_info="[192.0.2.1]",
                        local_ip="192.0.2.25", local_port="25")
    plugin = qp.load_plugin(line)
    plugin._hook = hook
    return plugin
