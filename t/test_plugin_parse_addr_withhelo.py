"""parse_addr_withhelo: no ESMTP parameters after HELO."""

from policy_support import replies, session


def run(greeting, *commands, plugins=("parse_addr_withhelo",)):
    return replies(session(list(plugins), [greeting] + list(commands)))[2:-1]


def test_parameters_refused_after_helo():
    assert run("HELO c.test", "MAIL FROM:<a@b.test> SIZE=10", "MAIL FROM:<a@b.test>",
               "RCPT TO:<x@example.test> NOTIFY=NEVER") == [
        "501 No parameters allowed in MAIL",
        "250 <a@b.test>, sender OK - how exciting to get mail from you!",
        "501 No parameters allowed in RCPT"]


def test_parameters_allowed_after_ehlo():
    got = replies(session(["parse_addr_withhelo"], ["EHLO c.test", "MAIL FROM:<a@b.test> SIZE=10"]))
    assert got[-2].startswith("250 <a@b.test>")


def test_syntax_errors():
    assert run("HELO c.test", "MAIL <a@b.test>", "MAIL FROM:junk", "MAIL FROM:<a@b.test>", "RCPT x@y",
               "RCPT TO:junk") == [
        "501 Syntax error in command", "501 Could not parse your MAIL FROM command",
        "250 <a@b.test>, sender OK - how exciting to get mail from you!",
        "501 Syntax error in command", "501 Could not parse your RCPT TO command"]


def test_empty_mail_from_is_null_sender():
    assert run("HELO c.test", "MAIL FROM:")[0] == "250 <>, sender OK - how exciting to get mail from you!"


def test_unbracketed_with_anglebrackets_plugin():
    assert run("HELO c.test", "MAIL FROM:a@b.test x", "MAIL FROM: a@b.test", "RCPT TO:postmaster",
               plugins=("parse_addr_withhelo", "dont_require_anglebrackets")) == [
        "501 No parameters allowed in MAIL",
        "250 <a@b.test>, sender OK - how exciting to get mail from you!",
        "250 <postmaster>, recipient ok"]
