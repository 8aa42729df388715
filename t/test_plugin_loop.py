"""loop: Received + Delivered-To hop count (ours included)."""

from policy_support import RCPT, replies, session


def end(plugin, headers):
    return replies(session([plugin], RCPT + ["DATA"] + headers + ["From: a@b.test", "", "b", "."]))[5]


def test_default_hundred():
    assert end("loop", ["Received: x"] * 98).startswith("250")
    assert end("loop", ["Received: x"] * 99) == "552 Too many hops (#5.4.6)"


def test_custom_limit_counts_delivered_to():
    assert end("loop 3", ["Received: x"]).startswith("250")
    assert end("loop 3", ["Received: x", "Delivered-To: y"]) == "552 Too many hops (#5.4.6)"


def test_invalid_limit_uses_default():
    assert end("loop abc", ["Received: x"] * 5).startswith("250")
