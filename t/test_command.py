"""Argument parsing of MAIL/RCPT (RFC 1869 parameters) like Qpsmtpd::Command."""

import pytest

from qpsmtpd.command import params_to_dict, parse
from qpsmtpd.constants import DENY, OK


@pytest.mark.parametrize("cmd,line,expected", [
    ("mail", "FROM:<a@b.test>", (OK, "<a@b.test>")),
    ("mail", "from: <a@b.test> SIZE=100 BODY=8BITMIME", (OK, "<a@b.test>", "SIZE=100", "BODY=8BITMIME")),
    ("mail", "FROM:", (OK, "<>")),
    ("mail", "FROM:<>", (OK, "<>")),
    ("mail", "FROM:a@b.test", (OK, "a@b.test")),
    ("mail", "TO:<a@b.test>", (DENY, "Syntax error in command")),
    ("mail", "FROM:<a@b.test x> SIZE=1", (DENY, "Syntax error in parameters")),
    ("rcpt", "TO:<x@y.test>", (OK, "<x@y.test>")),
    ("rcpt", "TO:<x@y.test> NOTIFY=NEVER", (OK, "<x@y.test>", "NOTIFY=NEVER")),
    ("rcpt", "TO: postmaster", (OK, "postmaster")),
    ("rcpt", "TO:nobody", (OK, "nobody")),
    ("rcpt", "FROM:<x@y.test>", (DENY, "Syntax error in command")),
    ("helo", "host.test extra", (OK, "host.test", "extra")),
])
def test_parse(cmd, line, expected):
    assert parse(cmd, line) == expected


def test_custom_parser_and_failing_custom_parser():
    assert parse("helo", "X", lambda cmd, line: (OK, line.lower())) == (OK, "x")

    def broken(cmd, line):
        raise ValueError("nope")

    assert parse("helo", "X", broken) == (DENY, "X")


def test_params_to_dict():
    assert params_to_dict(["SIZE=100", "BODY=8BITMIME", "SMTPUTF8"]) == {
        "size": "100", "body": "8BITMIME", "smtputf8": None}
