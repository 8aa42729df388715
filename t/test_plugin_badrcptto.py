"""badrcptto: exact, @domain, regexp, reasons, immunity."""

from policy_support import MAIL, log_has, replies, session

LIST = ["nobody@example.test", "@closed.example.test", r"^.*%.*@  No percent hack", "noat"]


def rcpt(address, **config):
    config.setdefault("badrcptto", LIST)
    config.setdefault("rcpthosts", ["example.test", ".example.test"])
    return replies(session(["badrcptto"], MAIL + [f"RCPT TO:{address}"], **config))[3]


def test_exact_default_reply():
    assert rcpt("<nobody@example.test>") == "550 mail to nobody@example.test not accepted here (#5.1.1)"
    assert rcpt("<NOBODY@EXAMPLE.TEST>") == "550 mail to nobody@example.test not accepted here (#5.1.1)"
    assert rcpt("<somebody@example.test>").startswith("250")


def test_domain_entry():
    assert rcpt("<a@closed.example.test>") == "550 mail to @closed.example.test not accepted here (#5.1.1)"


def test_regexp_with_reason():
    assert rcpt('<"a%b"@example.test>') == "550 No percent hack"


def test_bad_line_logged():
    result = session(["badrcptto"], MAIL + ["RCPT TO:<x@example.test>"], badrcptto=["noat"])
    assert log_has(result, "no @ sign in noat")


def test_empty_config_passes():
    assert rcpt("<nobody@example.test>", badrcptto=[]).startswith("250")


def test_relay_client_immune():
    result = session(["relay", "badrcptto"], MAIL + ["RCPT TO:<nobody@example.test>"], badrcptto=LIST,
                     env={"RELAYCLIENT": ""})
    assert replies(result)[3].startswith("250")
