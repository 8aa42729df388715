"""virus/klez_filter: the Klez signature in big messages."""

from policy_support import RCPT, replies, session

FILLER = ["QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"] * 800
PART = ['Content-Type: audio/x-wav; name="foo.exe"', "Content-Transfer-Encoding: base64", "",
        "TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]
HEADER = ["From: a@b.test", "MIME-Version: 1.0", 'Content-Type: multipart/alternative; boundary="XX"', ""]


def reply(body):
    return replies(session(["virus/klez_filter"], RCPT + ["DATA"] + HEADER + body + ["."]))[5]


def test_klez_detected():
    assert reply(["--XX"] + PART + FILLER + ["--XX--"]) == "552 Klez Virus Detected"


def test_small_message_not_scanned():
    assert reply(["--XX"] + PART + ["--XX--"]).startswith("250 Queued")


def test_signature_without_content_type_passes():
    assert reply(["--XX", "Content-Type: text/plain", ""] + PART[3:] + FILLER).startswith("250 Queued")


def test_signature_after_line_41_passes():
    assert reply(["--XX"] + ["filler"] * 45 + PART + FILLER).startswith("250 Queued")
