"""rcpt_regexp: strings, /regexps/, codes, invalid lines."""

from policy_support import MAIL, log_has, replies, session

RULES = ["me@myhost.test OK Accepting mail", r"/^user\d+@doma\.in$/ OK", "info@myhost.test DENY User not found.",
         "/^(unclosed@/ DENY broken", "x@myhost.test NOPE", r"/^unused@.*/ DENYSOFT Later",
         "/^.*$/ DECLINED Fall through"]


def run(*recipients):
    result = session(["rcpt_regexp"], MAIL + [f"RCPT TO:{r}" for r in recipients], rcpt_regexp=RULES)
    return result, replies(result)[3:3 + len(recipients)]


def test_rules():
    result, got = run("<ME@myhost.test>", "<user12@doma.in>", "<info@myhost.test>", "<unused@x.test>",
                      "<other@example.test>", "<other@foreign.test>")
    assert got == ["250 <ME@myhost.test>, recipient ok", "250 <user12@doma.in>, recipient ok",
                   "550 User not found.", "450 Later", "250 <other@example.test>, recipient ok",
                   "550 Relaying denied (#5.7.1)"]
    assert log_has(result, "not valid")
    assert log_has(result, "'NOPE' is not a valid constant")
