"""helo: policies, badhelo (names, regexps, negation), localhost, forged literal, plain IP, X-HELO."""

import pytest

from policy_support import load_plugin, replies, session


def helo(name, plugin="helo", ip="192.0.2.1", command="HELO", **config):
    result = session([plugin], [f"{command} {name}", "MAIL FROM:<a@b.test>"], connection={"remote_ip": ip}, **config)
    return replies(result)


def test_plain_name_passes_and_x_helo_added():
    result = session(["helo"], ["HELO client.test", "MAIL FROM:<a@b.test>", "RCPT TO:<x@example.test>", "DATA",
                                "X-HELO: forged", "From: a@b.test", "", "b", "."])
    assert replies(result)[1].startswith("250")
    message = result.queued[0].message
    assert message.startswith(b"X-HELO: client.test\n")
    assert b"forged" not in message


def test_badhelo_name_disconnects():
    got = helo("Yahoo.com", badhelo=["yahoo.com"])
    assert got[1:] == ["550 I do not believe you are Yahoo.com."]


def test_badhelo_regexp_and_negation():
    assert helo("mail.spam.test", badhelo=[r"\.spam\.test$"])[1] == "550 Your HELO hostname is not allowed"
    assert helo("client.ok.test", badhelo=[r"!\.test$"])[1].startswith("250")
    assert helo("client.ok.example", badhelo=[r"!\.test$"])[1] == "550 Your HELO hostname is not allowed"


def test_localhost_only_from_loopback():
    assert helo("localhost")[1] == "550 You are not localhost"
    assert helo("localhost", ip="127.0.0.1")[1].startswith("250")
    assert helo("LOCALHOST", ip="::1")[1].startswith("250")


def test_forged_literal():
    assert helo("[198.51.100.1]")[1] == "550 Forged IPs not accepted here"
    assert helo("[192.0.2.1]")[1].startswith("250")
    assert helo("[IPv6:2001:db8::1]", ip="2001:db8::1")[1].startswith("250")
    assert helo("[IPv6:2001:db8::2]", ip="2001:db8::1")[1] == "550 Forged IPs not accepted here"


def test_plain_ip():
    assert helo("198.51.100.1")[1] == "550 Plain IP is invalid HELO hostname (RFC 2821)"
    assert helo("192.0.2.1")[1] == "550 Plain IP is invalid HELO hostname (RFC 2821)"
    assert helo("2001:db8::1")[1] == "550 Plain IP is invalid HELO hostname (RFC 2821)"


def test_ehlo_checked_too():
    assert helo("198.51.100.1", command="EHLO")[1] == "550 Plain IP is invalid HELO hostname (RFC 2821)"


def test_reject_0_and_naughty():
    assert helo("198.51.100.1", plugin="helo reject 0")[1].startswith("250")
    got = helo("198.51.100.1", plugin="helo reject naughty")
    assert got[1].startswith("250") and got[2].startswith("250")
    result = session(["helo reject naughty", "naughty reject mail"], ["HELO 198.51.100.1", "MAIL FROM:<a@b.test>"])
    assert replies(result)[2] == "550 (helo) Plain IP is invalid HELO hostname (RFC 2821)"


def test_reject_type_respected():
    got = helo("198.51.100.1", plugin="helo reject_type temp")
    assert got[1] == "450 Plain IP is invalid HELO hostname (RFC 2821)"
    assert got[2] == "503 please say hello first ..."


@pytest.mark.components
def test_rfc_policy_non_dns_tests():
    result = session(["helo policy rfc"], ["HELO nodots", "HELO bad_chars.test", "HELO good.test"])
    got = replies(result)
    assert got[1] == "550 HELO name is not fully qualified. Read RFC 2821"
    result = session(["helo policy rfc reject_type perm"], ["HELO bad_chars.test", "HELO [192.0.2.1]"])
    got = replies(result)
    assert got[1] == "550 HELO name contains invalid FQDN characters. Read RFC 1035"


@pytest.mark.components
def test_strict_policy_tests_and_address_literal():
    plugin = load_plugin("helo policy strict")
    assert plugin.helo_tests == ["is_in_badhelo", "invalid_localhost", "is_forged_literal", "is_plain_ip",
                                 "is_not_fqdn", "no_forward_dns", "no_reverse_dns",
                                 "is_address_literal", "no_matching_dns"]
    assert plugin.is_address_literal("[192.0.2.1]") == (
        "RFC 2821 allows an address literal, but we do not", "bracketed IP")
    assert plugin.is_address_literal("client.test") is None
    assert load_plugin("helo").helo_tests == ["is_in_badhelo", "invalid_localhost", "is_forged_literal",
                                              "is_plain_ip"]


def test_relay_client_immune():
    result = session(["relay", "helo"], ["HELO 198.51.100.1"], env={"RELAYCLIENT": ""})
    assert replies(result)[1].startswith("250")
