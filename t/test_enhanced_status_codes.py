"""ENHANCEDSTATUSCODES (RFC 2034/3463, issue 17): opt-in with config/enhancedstatuscodes; when on,
every reply of the engine and of the shipped plugins carries an enhanced code of the reply's
class (except the greeting, the HELO/EHLO replies and the 354/334 intermediate replies, as
RFC 2034 and Postfix do), and when off no reply gains one.  Sessions over every command path:
syntax errors, sequencing, limits, SMTPUTF8, BDAT, AUTH, relaying, plugins that answer
themselves (help, queue plugins failing), the queue's success."""

from __future__ import annotations

import re

import pytest

from qpsmtpd.testing import run_session

ESC = re.compile(r"^([245])\.\d{1,3}\.\d{1,3} ")
BASE = {"plugins": ["help not_implemented 1", "rcpt_ok", "auth/authdeny"], "rcpthosts": ["example.test"],
        "databytes": "1000", "me": "mx.example.test"}
LONG = "NOOP " + "x" * 3000

SCRIPTS = {
    "sequencing": ["MAIL FROM:<a@b.test>", "EHLO c.test", "HELO again.test", "RCPT TO:<x@example.test>", "DATA",
                   "MAIL FROM:<a@b.test>", "DATA", "RSET", "VRFY x", "NOOP", "HELP", "BOGUS", LONG, "QUIT"],
    "parsing": ["EHLO c.test", "MAIL FROM:a", "MAIL TO:<a@b.test>", "MAIL FROM:<a@b.test> SIZE=x",
                "MAIL FROM:<a@b.test> SIZE=5000", "MAIL FROM:<jörg@b.test>", "MAIL FROM:<a@b.test> SMTPUTF8=1",
                "MAIL FROM:<a@b.test> BODY=BINARYMIME", "MAIL FROM:<a@b.test>", "RCPT TO:x", "RCPT TO:<a b>",
                "RCPT TO:<x@elsewhere.test>", "RCPT TO:<x@example.test>", "QUIT"],
    "message": ["EHLO c.test", "MAIL FROM:<a@b.test>", "RCPT TO:<x@example.test>", "DATA", "Subject: x", "",
                "body", ".", "MAIL FROM:<a@b.test>", "RCPT TO:<x@example.test>", "DATA",
                *["y" * 100] * 12, ".", "QUIT"],
    "bdat": ["EHLO c.test", "BDAT x", "BDAT 0 LAST", "MAIL FROM:<a@b.test>", "RCPT TO:<x@example.test>",
             "BDAT 5", "a: b", "BDAT 3 LAST", "\r\nz", "QUIT"],
    "auth": ["HELO c.test", "AUTH PLAIN", "NOOP", "QUIT"],
    "auth_ehlo": ["EHLO c.test", "AUTH FOO", "AUTH PLAIN AGpvZQB4", "AUTH PLAIN", "*", "QUIT"],
    "helo_only": ["HELO c.test", "BDAT 0 LAST", "MAIL FROM:<a@b.test> SMTPUTF8", "QUIT"],
}


def exempt(index: int, code: int, lines: list[str], script: list[str]) -> bool:
    return code in (354, 334) or index == 0 or lines[0].startswith("mx.example.test Hi ")


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_every_reply_carries_a_code_of_its_class_when_on(name):
    script = SCRIPTS[name]
    result = run_session(script, config={**BASE, "enhancedstatuscodes": "1"}, capture_queue=True)
    checked = 0
    for index, (code, lines) in enumerate(result.replies()):
        if exempt(index, code, lines, script):
            continue
        for line in lines:
            match = ESC.match(line)
            assert match and int(match.group(1)) == code // 100, (name, code, line)
        checked += 1
    assert checked >= 3


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_no_reply_gains_a_code_when_off(name):
    off = run_session(SCRIPTS[name], config=BASE, capture_queue=True)
    on = run_session(SCRIPTS[name], config={**BASE, "enhancedstatuscodes": "1"}, capture_queue=True)
    assert [code for code, _ in off.replies()] == [code for code, _ in on.replies()]
    for index, ((code, lines), (_code, on_lines)) in enumerate(zip(off.replies(), on.replies())):
        if exempt(index, code, lines, SCRIPTS[name]):
            continue
        for line, on_line in zip(lines, on_lines):
            if ESC.match(line):  # the AUTH replies carried theirs before (as Perl's)
                assert line == on_line
            else:
                assert on_line.endswith(line)


def test_specific_codes():
    result = run_session(SCRIPTS["parsing"] + [], config={**BASE, "enhancedstatuscodes": "1"})
    replies = dict((lines[0].split(" ", 1)[1], lines[0].split(" ", 1)[0]) for _code, lines in result.replies()[2:])
    assert replies["Message size exceeds fixed maximum message size"] == "5.3.4"
    assert replies["Relaying denied (#5.7.1)"] == "5.7.1"
    assert replies["BINARYMIME not supported"] == "5.5.4"
    assert replies["could not parse recipient"] == "5.1.3"
    assert replies["SMTPUTF8 takes no value"] == "5.5.4"


def test_a_queue_plugin_answering_itself_gets_its_class_code(tmp_path):
    """queue/maildir into a path that cannot be created answers 451 itself (DONE)."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run_session(["EHLO c.test", "MAIL FROM:<a@b.test>", "RCPT TO:<x@example.test>", "DATA", "x: y", "",
                          "z", ".", "QUIT"],
                         config={**BASE, "plugins": ["rcpt_ok", f"queue/maildir {blocker}/Maildir"],
                                 "enhancedstatuscodes": "1"})
    code, lines = result.replies()[5]
    assert code == 451 and lines[0].startswith("4.0.0 queue error")
