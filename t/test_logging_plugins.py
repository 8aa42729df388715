"""The stderr logging plugins (warn, connection_id, transaction_id, adaptive, devnull)
through the real qpsmtpd.py: format, levels, one line per event, no CR/LF and
no credentials from the client."""

from __future__ import annotations

import base64
import re
import tempfile
from pathlib import Path

import pytest

from components import QMAIL_QUEUE_DOUBLE, qq_double_messages
from deploy_support import mail_session, private_install, remove_install, run_pipe

SECRET = "s3cr3t-Pa55"
AUTH_B64 = base64.b64encode(f"\0user@example.test\0{SECRET}".encode()).decode()
NASTY = ["NOOP one\rtwo", "NOOP three\x1b[31mred", f"AUTH PLAIN {AUTH_B64}"]


@pytest.fixture
def session(request):
    """Run sessions with a given config/logging; messages go to the qmail-queue double."""
    made = []

    def run(logging: list[str], commands: list[str], loglevel: str = "4", extra: dict | None = None):
        queue_dir = Path(tempfile.mkdtemp(prefix="qq-"))
        install = private_install({"plugins": ["rcpt_ok", "queue/qmail-queue"], "rcpthosts": ["example.test"],
                                   "logging": logging, "loglevel": loglevel, **(extra or {})})
        made.append(install)
        made.append(queue_dir)
        result = run_pipe(install, commands, env={"QMAILQUEUE": str(QMAIL_QUEUE_DOUBLE),
                                                  "QQ_DOUBLE_DIR": str(queue_dir)})
        result.queued = qq_double_messages(queue_dir)
        return result

    yield run
    for path in made:
        remove_install(path)


def assert_clean(lines: list[str]) -> None:
    for line in lines:
        assert "\r" not in line and "\x1b" not in line, line
        assert SECRET not in line and AUTH_B64 not in line, line


def test_warn_format_level_and_sanitising(session):
    result = session(["logging/warn LOGINFO"], ["EHLO client.test", *NASTY, *mail_session()[1:]])
    assert result.codes()[-2:] == [250, 221]
    assert len(result.queued) == 1
    lines = result.log_lines()
    assert lines, result.stderr
    for line in lines:
        assert line.startswith(f"{result.pid} "), line
    assert_clean(lines)
    assert f"{result.pid} dispatching NOOP one\\x0dtwo" in lines
    assert f"{result.pid} dispatching NOOP three\\x1b[31mred" in lines
    assert f"{result.pid} dispatching AUTH PLAIN <hidden credentials>" in lines
    assert f"{result.pid} (rcpt) rcpt_ok: pass: example.test in rcpthosts" in lines
    assert not any("running plugin" in line for line in lines), "LOGDEBUG lines at LOGINFO"


def test_warn_default_level_is_config_loglevel(session):
    quiet = session(["logging/warn"], mail_session(), loglevel="4")
    assert quiet.log_lines() == []
    chatty = session(["logging/warn"], mail_session(), loglevel="7")
    assert any("running plugin: rcpt_ok" in line for line in chatty.log_lines())


def test_connection_id_lines(session):
    result = session(["logging/connection_id 6"], mail_session(count=2))
    lines = result.log_lines()
    ids = {line.split(" ", 1)[0] for line in lines}
    assert len(ids) == 1, ids
    (connection_id,) = ids
    assert re.fullmatch(rf"\d{{10}}\.{result.pid}", connection_id)
    assert f"{connection_id} dispatching QUIT" in lines


def test_transaction_id_numbers_messages(session):
    result = session(["logging/transaction_id LOGINFO"], mail_session(count=2))
    assert len(result.queued) == 2
    lines = result.log_lines()
    prefix = rf"\d{{10}}\.{result.pid}"
    rcpts = [line for line in lines if "dispatching RCPT" in line]
    assert re.fullmatch(prefix + r"\.1 dispatching RCPT TO:<x@example.test>", rcpts[0]), rcpts
    assert re.fullmatch(prefix + r"\.2 dispatching RCPT TO:<x@example.test>", rcpts[1]), rcpts
    assert any(re.fullmatch(prefix + " dispatching EHLO client.test", line) for line in lines)
    data = [line for line in lines if "dispatching DATA" in line]
    assert re.match(prefix + r"\.1 ", data[0]) and re.match(prefix + r"\.2 ", data[1]), data


def test_adaptive_accepted_and_rejected(session):
    accepted = session(["logging/adaptive accept LOGINFO reject LOGINFO"], mail_session())
    marked = [line for line in accepted.log_lines() if line.startswith(f"{accepted.pid}` ")]
    assert any("(rcpt) rcpt_ok: pass" in line for line in marked), accepted.log_lines()
    rejected = session(["logging/adaptive accept LOGINFO reject LOGINFO"], mail_session("x@elsewhere.test"))
    assert 550 in rejected.codes() or 554 in rejected.codes() or 553 in rejected.codes(), rejected.replies()
    assert not [line for line in rejected.log_lines() if line.startswith(f"{rejected.pid}`")]
    assert any(line.startswith(f"{rejected.pid} dispatching RCPT") for line in rejected.log_lines())


def test_devnull_swallows_everything(session):
    without = session([], mail_session(), loglevel="7")
    assert without.log_lines(), "the built-in logger should have written something"
    with_devnull = session(["logging/devnull"], mail_session(), loglevel="7")
    assert with_devnull.stderr == b""
    assert with_devnull.codes()[-2:] == [250, 221]


@pytest.mark.parametrize("line", ["logging/warn LOGBOGUS", "logging/connection_id -1",
                                  "logging/adaptive accept", "logging/transaction_id nope"])
def test_bad_arguments_refuse_the_session(session, line):
    result = session([line], mail_session())
    assert result.codes() == [421]
    assert result.returncode == 1


def test_no_credentials_in_any_log(session, tmp_path):
    user, login_b64 = "user@example.test", base64.b64encode(b"user@example.test").decode()
    password_b64 = base64.b64encode(SECRET.encode()).decode()
    wrong_b64 = base64.b64encode(b"\0user@example.test\0wrong-Pa55").decode()
    logging = ["logging/warn LOGDEBUG", f"logging/file loglevel LOGDEBUG {tmp_path}/all.log"]
    commands = ["EHLO client.test", f"AUTH PLAIN {wrong_b64}", "AUTH LOGIN", login_b64, password_b64,
                "MAIL FROM:<user@example.test>", "RCPT TO:<x@elsewhere.test>", "QUIT"]
    result = session(logging, commands, loglevel="7",
                     extra={"plugins": ["auth/auth_flat_file", "relay", "rcpt_ok", "queue/qmail-queue"],
                            "flat_auth_pw": [f"{user}:{SECRET}"]})
    replies = result.replies()
    assert any(line.startswith("535") for line in replies) and any(line.startswith("235") for line in replies), replies
    assert any(line.startswith("250 <x@elsewhere.test>") for line in replies), "authenticated users relay"
    logs = result.log_lines() + (tmp_path / "all.log").read_text().splitlines()
    assert len(logs) > 20
    for line in logs:
        for secret in (SECRET, password_b64, wrong_b64, "wrong-Pa55"):
            assert secret not in line, line
