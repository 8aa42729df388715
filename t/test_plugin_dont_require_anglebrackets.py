"""dont_require_anglebrackets: addresses without <> in MAIL and RCPT."""

from policy_support import HELO, log_has, replies, session


def test_without_plugin_refused():
    got = replies(session([], HELO + ["MAIL FROM:a@b.test"]))
    assert got[2] == "501 could not parse your mail from command"


def test_brackets_added():
    lines = HELO + ["MAIL FROM:a@b.test", "RCPT TO:x@example.test", "MAIL FROM: a@b.test", "RCPT TO: x@example.test",
                    "RCPT TO:x@foreign.test"]
    result = session(["dont_require_anglebrackets"], lines, loglevel="6")
    assert replies(result)[2:] == [
        "250 <a@b.test>, sender OK - how exciting to get mail from you!",
        "250 <x@example.test>, recipient ok",
        "250 <a@b.test>, sender OK - how exciting to get mail from you!",
        "250 <x@example.test>, recipient ok",
        "550 Relaying denied (#5.7.1)",
        "221 mx.example.test closing connection. Have a wonderful day."]
    assert log_has(result, "fail, added MAIL angle brackets")
    assert log_has(result, "fail, added RCPT angle brackets")
    assert log_has(result, "karma -2 (-8)")


def test_bracketed_untouched():
    result = session(["dont_require_anglebrackets"], HELO + ["MAIL FROM:<a@b.test>", "MAIL FROM:<>"], loglevel="6")
    assert replies(result)[2].startswith("250 <a@b.test>")
    assert replies(result)[3].startswith("250 <>")
    assert not log_has(result, "karma")
