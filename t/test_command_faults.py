"""Smaller faults of issue 20: bare MAIL, SIZE= numbers, pipelined AUTH after a refusal."""

import base64

import pytest

from qpsmtpd.command import size_param
from qpsmtpd.testing import run_session

CONFIG = {"plugins": ["rcpt_ok"], "rcpthosts": ["example.test"], "me": ["mx.example.test"]}


def test_mail_and_rcpt_without_argument_are_syntax_errors():
    result = run_session(["EHLO c.test", "MAIL", "MAIL ", "MAIL FROM:<a@c.test>", "RCPT", "QUIT"], config=CONFIG)
    assert result.codes() == [220, 250, 501, 501, 250, 501, 221]


def test_mail_from_empty_is_still_the_null_sender():
    result = run_session(["EHLO c.test", "MAIL FROM:<>", "QUIT"], config=CONFIG)
    assert result.codes() == [220, 250, 250, 221]


@pytest.mark.parametrize("value,number", [("100", 100), ("0", 0), ("²", None), ("１２３", None), ("", None),
                                          ("-1", None), ("1" * 21, None), ("12a", None), (None, None)])
def test_size_param_takes_ascii_digits_only(value, number):
    assert size_param(value) == number


USER, PASSWORD = base64.b64encode(b"alice").decode(), base64.b64encode(b"s3cret-pw").decode()
AUTH_CONFIG = {**CONFIG, "plugins": ["auth/auth_flat_file", "rcpt_ok"], "flat_auth_pw": ["alice:s3cret-pw"]}


@pytest.mark.parametrize("hello,extra", [("EHLO c.test\r\nMAIL FROM:<a@c.test>", {}),
                                         ("EHLO c.test", {"tls_before_auth": ["1"]}),
                                         ("HELO c.test", {})])
def test_pipelined_auth_login_refused_does_not_log_credentials_as_commands(hello, extra):
    """AUTH refused (503 inside a transaction or before TLS; 500 after HELO): the pipelined
    base64 lines are answered 501 and never logged or run as commands."""
    session = f"{hello}\r\nAUTH LOGIN\r\n{USER}\r\n{PASSWORD}\r\nQUIT\r\n".encode()
    result = run_session(session, config={**AUTH_CONFIG, **extra})
    codes = result.codes()
    refused = 500 if hello.startswith("HELO") else 503  # after HELO, AUTH is no command at all
    assert refused in codes and codes[-1] == 221
    assert codes[codes.index(refused) + 1:] == [501, 501, 221]
    joined = "\n".join(result.log)
    assert USER not in joined and PASSWORD not in joined


def test_pipelined_command_after_refused_auth_still_runs():
    result = run_session(b"EHLO c.test\r\nAUTH LOGIN\r\nNOOP\r\nQUIT\r\n",
                         config={**AUTH_CONFIG, "tls_before_auth": ["1"]})
    assert result.codes() == [220, 250, 503, 250, 221]
