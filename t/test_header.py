"""The header object keeps raw fields (folds, 8-bit bytes) and edits them by name."""

from qpsmtpd.header import Header, decode


def test_extract_keeps_folding_and_raw_bytes():
    raw = b"Subject: hello\n  world\nX-Caf\xc3\xa9: \xff raw\nReceived: a\nreceived: b\n"
    header = Header(decode(raw).splitlines(keepends=True))
    assert header.get("subject") == "hello\n  world"
    assert header.get_all("RECEIVED") == ["a", "b"]
    assert header.as_bytes() == raw


def test_add_replace_delete():
    header = Header(["Subject: one\n", "To: x@y.test\n"])
    header.add("X-Spam", "yes")
    header.add("Received", "from a\n by b", 0)
    header.replace("Subject", "two")
    assert header.as_string() == "Received: from a\n by b\nSubject: two\nTo: x@y.test\nX-Spam: yes\n"
    assert header.delete("x-spam") == 1
    assert header.get("X-Spam") is None


def test_added_values_cannot_inject_new_fields():
    header = Header()
    header.add("X-Test", "value\r\nBcc: victim@example.com")
    assert header.count("Bcc") == 0
    assert header.as_string() == "X-Test: value\n Bcc: victim@example.com\n"
