"""badmailfromto: sender/recipient pairs."""

from policy_support import HELO, replies, session

PAIRS = ["stalker@bad.test victim@example.test", "@spam.test boss@example.test"]


def run(sender, *recipients):
    lines = HELO + [f"MAIL FROM:{sender}"] + [f"RCPT TO:{r}" for r in recipients]
    return replies(session(["badmailfromto"], lines, badmailfromto=PAIRS))[3:3 + len(recipients)]


def test_pair_refused_other_recipients_accepted():
    assert run("<stalker@bad.test>", "<victim@example.test>", "<other@example.test>") == [
        "550 mail to victim@example.test not accepted here", "250 <other@example.test>, recipient ok"]


def test_case_insensitive_and_domain_entry():
    assert run("<STALKER@bad.test>", "<Victim@Example.test>")[0].startswith("550")
    assert run("<x@spam.test>", "<boss@example.test>", "<victim@example.test>") == [
        "550 mail to boss@example.test not accepted here", "250 <victim@example.test>, recipient ok"]


def test_other_sender_and_null_sender():
    assert run("<friend@bad.test>", "<victim@example.test>")[0].startswith("250")
    assert run("<>", "<victim@example.test>")[0].startswith("250")


def test_mark_does_not_leak_into_next_message():
    lines = HELO + ["MAIL FROM:<stalker@bad.test>", "RCPT TO:<victim@example.test>",
                    "MAIL FROM:<friend@ok.test>", "RCPT TO:<victim@example.test>"]
    got = replies(session(["badmailfromto"], lines, badmailfromto=PAIRS))
    assert got[3].startswith("550") and got[5].startswith("250")
