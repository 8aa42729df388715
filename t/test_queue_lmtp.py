"""queue/lmtp (issue 17) delivering into a real Dovecot LMTP (private config, passwd-file users,
maildirs read by the test): unix socket and TCP, per-recipient replies, the partial-failure rule
(a temporary failure after DATA from Dovecot's quota plugin gives 451, the retry delivers only the
rest: one copy each), permanent refusals (554 naming them), an LMTP server that is down (451)."""

from __future__ import annotations

import pytest

from components_modern import dovecot_lmtp
from deploy_support import private_install, remove_install, run_pipe

pytestmark = pytest.mark.components

MESSAGE_ID = "<partial-1@sender.test>"


@pytest.fixture(scope="module")
def dovecot():
    with dovecot_lmtp() as daemon:
        yield daemon


def session(target: str, recipients: list[str], subject: str, body: list[str] | None = None,
            extra_config: dict | None = None):
    config = {"plugins": ["rcpt_ok", f"queue/lmtp {target}"], "rcpthosts": ["example.test"],
              "logging": ["logging/warn LOGINFO"], **(extra_config or {})}
    base = private_install(config)
    lines = ["EHLO client.test", "MAIL FROM:<sender@sender.test>"]
    lines += [f"RCPT TO:<{rcpt}>" for rcpt in recipients]
    lines += ["DATA", f"Subject: {subject}", f"Message-ID: {MESSAGE_ID.replace('1', subject.replace(' ', '-'))}",
              "", *(body or ["hello", "..a line starting with a dot"]), ".", "QUIT"]
    try:
        return run_pipe(base, lines)
    finally:
        remove_install(base)


def final_reply(result) -> str:
    return [line for line in result.replies() if line[:3] in ("250", "451", "554") and "Delivered" in line
            or line.startswith(("451 ", "554 "))][-1]


def by_subject(dovecot, user: str, subject: str) -> list[bytes]:
    return [msg for msg in dovecot.maildir(user) if f"Subject: {subject}\r\n".encode() in msg
            or f"Subject: {subject}\n".encode() in msg]


def test_unix_socket_two_recipients(dovecot):
    result = session(str(dovecot.socket_path), ["alice@example.test", "bob@example.test"], "over unix")
    assert final_reply(result) == "250 Delivered to 2 recipient(s)"
    for user in ("alice", "bob"):
        [message] = by_subject(dovecot, user, "over unix")
        assert b"\n..a line starting with a dot" not in message and b"\n.a line starting with a dot" in message
        assert b"Received: from" in message  # our header reached the mailbox


def test_tcp(dovecot):
    result = session(f"127.0.0.1:{dovecot.port}", ["carol@example.test"], "over tcp")
    assert final_reply(result).startswith("250 ")
    assert len(by_subject(dovecot, "carol", "over tcp")) == 1


def test_temporary_failure_for_one_recipient_and_the_retry_delivers_once(dovecot, tmp_path):
    journal = {"lmtp_journal_dir": str(tmp_path / "journal")}  # each private install has its own spool
    dovecot.set_quota("carol", "*:storage=1")  # one byte: carol is over quota -> 452 after DATA
    try:
        first = session(str(dovecot.socket_path), ["alice@example.test", "carol@example.test"], "partial",
                        body=["x" * 2000], extra_config=journal)
        assert final_reply(first).startswith("451 Delivered to 1 of 2 recipients; try again later"), first.replies()
        assert "carol@example.test" in final_reply(first)
        assert len(by_subject(dovecot, "alice", "partial")) == 1
        assert by_subject(dovecot, "carol", "partial") == []
    finally:
        dovecot.set_quota("carol", "*:storage=100M")  # Maildir++ keeps the old limit without a rule
    second = session(str(dovecot.socket_path), ["alice@example.test", "carol@example.test"], "partial",
                     body=["x" * 2000], extra_config=journal)
    assert final_reply(second) == "250 Delivered to 2 recipient(s)"
    assert any("already delivered in an earlier attempt" in line for line in second.log_lines())
    assert len(by_subject(dovecot, "alice", "partial")) == 1  # never twice
    assert len(by_subject(dovecot, "carol", "partial")) == 1
    assert [path.stat().st_mode & 0o777 for path in (tmp_path / "journal").iterdir()] == [0o600]


def test_a_different_message_is_not_taken_for_a_retry(dovecot):
    for body in (["first"], ["second"]):
        result = session(str(dovecot.socket_path), ["bob@example.test"], "same headers", body=body)
        assert final_reply(result).startswith("250 ")
    assert len(by_subject(dovecot, "bob", "same headers")) == 2


def test_permanent_refusal_is_554_naming_the_recipient(dovecot):
    result = session(str(dovecot.socket_path), ["bob@example.test", "nobody@example.test"], "one unknown")
    reply = final_reply(result)
    assert reply.startswith("554 Delivered to 1 of 2 recipients; refused: <nobody@example.test>: 550"), reply
    assert len(by_subject(dovecot, "bob", "one unknown")) == 1


def test_everyone_refused_is_554(dovecot):
    result = session(str(dovecot.socket_path), ["nobody@example.test"], "nobody")
    assert final_reply(result).startswith("554 Delivered to 0 of 1 recipients")


def test_server_down_is_451(tmp_path):
    result = session(str(tmp_path / "no-such-socket"), ["alice@example.test"], "down")
    reply = final_reply(result)
    assert reply.startswith("451 Delivered to 0 of 1 recipients; try again later") and "cannot connect" in reply


def test_enhanced_status_codes(dovecot):
    result = session(str(dovecot.socket_path), ["alice@example.test"], "esc",
                     extra_config={"enhancedstatuscodes": "1"})
    assert "250 2.0.0 Delivered to 1 recipient(s)" in result.replies()
