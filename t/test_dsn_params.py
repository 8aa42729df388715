"""DSN parameters (RFC 3461, issue 17): opt-in with config/dsn (EHLO then offers DSN), RET/ENVID on
MAIL and NOTIFY/ORCPT on RCPT checked (501 5.5.4 for a bad one) and kept in the transaction for
the queue plugins; with the file off nothing changes (the parameters are ignored, as in Perl)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qpsmtpd.dsnparams import is_xtext
from qpsmtpd.testing import run_session

CONFIG = {"plugins": ["rcpt_ok"], "rcpthosts": ["example.test"], "dsn": "1", "enhancedstatuscodes": "1"}


@pytest.mark.parametrize("text, valid", [("abc", True), ("a+2Bb", True), ("a+2bb", False), ("a+2", False),
                                         ("a=b", False), ("a b", False), ("ü", False), ("", True)])
def test_xtext(text, valid):
    assert is_xtext(text) is valid


def test_offered_only_when_on():
    on = run_session(["EHLO c.test", "QUIT"], config=CONFIG)
    off = run_session(["EHLO c.test", "MAIL FROM:<a@b.test> RET=BOGUS", "QUIT"],
                      config={**CONFIG, "dsn": "0"})
    assert "DSN" in on.replies()[1][1] and "DSN" not in off.replies()[1][1]
    assert off.replies()[2][0] == 250  # ignored when off, as Perl qpsmtpd does


@pytest.mark.parametrize("line, reply", [
    ("MAIL FROM:<a@b.test> RET=ALL", "5.5.4 RET must be FULL or HDRS"),
    ("MAIL FROM:<a@b.test> ENVID=a+zz", "5.5.4 ENVID must be xtext of at most 100 characters"),
    ("MAIL FROM:<a@b.test> ENVID=" + "x" * 101, "5.5.4 ENVID must be xtext of at most 100 characters"),
    ("MAIL FROM:<a@b.test> NOTIFY=NEVER", "5.5.4 NOTIFY belongs on RCPT"),
])
def test_bad_mail_parameters(line, reply):
    result = run_session(["EHLO c.test", line, "QUIT"], config=CONFIG)
    assert result.replies()[2] == (501, [reply])


@pytest.mark.parametrize("params, reply", [
    ("NOTIFY=NEVER,SUCCESS", "5.5.4 NOTIFY must be NEVER or a list of SUCCESS, FAILURE, DELAY"),
    ("NOTIFY=SUCCESS,SUCCESS", "5.5.4 NOTIFY must be NEVER or a list of SUCCESS, FAILURE, DELAY"),
    ("NOTIFY=SOMETIMES", "5.5.4 NOTIFY must be NEVER or a list of SUCCESS, FAILURE, DELAY"),
    ("ORCPT=x@example.test", "5.5.4 ORCPT must be addr-type;xtext"),
    ("ORCPT=rfc822;a+4", "5.5.4 ORCPT must be addr-type;xtext"),
    ("RET=FULL", "5.5.4 RET belongs on MAIL"),
])
def test_bad_rcpt_parameters(params, reply):
    result = run_session(["EHLO c.test", "MAIL FROM:<a@b.test>", f"RCPT TO:<x@example.test> {params}", "QUIT"],
                         config=CONFIG)
    assert result.replies()[3] == (501, [reply])


def test_kept_in_the_transaction():
    plugins_dir = str(Path(__file__).parent / "plugins_for_tests")
    result = run_session(["EHLO c.test", "MAIL FROM:<a@b.test> RET=HDRS ENVID=QQ+2B1",
                          "RCPT TO:<x@example.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;x+40example.test",
                          "DATA", "a: b", "", "c", ".", "QUIT"],
                         config={**CONFIG, "plugins": ["rcpt_ok", "notes_to_header mail_params"]},
                         capture_queue=True, plugin_dirs=[plugins_dir, "plugins"])
    assert [code for code, _ in result.replies()][2:6] == [250, 250, 354, 250]
    message = result.queued[0].message
    assert b'"envid": "QQ+2B1"' in message and b'"ret": "HDRS"' in message
