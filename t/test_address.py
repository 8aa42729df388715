"""Address parsing like Qpsmtpd::Address."""

import pytest

from qpsmtpd.address import Address


@pytest.mark.parametrize("text,user,host,formatted", [
    ("<user@example.com>", "user", "example.com", "<user@example.com>"),
    ("<>", None, None, "<>"),
    ("<postmaster>", "postmaster", None, "<postmaster>"),
    ("<PostMaster>", "postmaster", None, "<postmaster>"),
    ("<@hop1.test,@hop2.test:user@example.com>", "user", "example.com", "<user@example.com>"),
    ('<"john doe"@example.com>', "john doe", "example.com", '<"john\\ doe"@example.com>'),
    ('<"a\\"b"@example.com>', 'a"b', "example.com", '<"a\\"b"@example.com>'),
    ("<user@[192.0.2.1]>", "user", "[192.0.2.1]", "<user@[192.0.2.1]>"),
    ("<user@[IPv6:2001:db8::1]>", "user", "[IPv6:2001:db8::1]", "<user@[IPv6:2001:db8::1]>"),
    ("<first.last+tag@sub.example.com>", "first.last+tag", "sub.example.com", "<first.last+tag@sub.example.com>"),
])
def test_parse(text, user, host, formatted):
    address = Address.parse(text)
    assert address is not None
    assert (address.user, address.host) == (user, host)
    assert address.format() == formatted
    assert str(address) == formatted


@pytest.mark.parametrize("text", ["<foo bar@example.com>", "<user@>", "<user@-bad.test>", "<a@b@c.test>",
                                  "<.leading@x.test>", "<user@example..com>"])
def test_unparseable(text):
    assert Address.parse(text) is None


def test_address_property_and_equality():
    address = Address.parse("<User@Example.com>")
    assert address.address == "User@Example.com"
    assert address == "<User@Example.com>"
    assert address == "User@Example.com"
    assert address != "<user@example.com>"
    assert Address.parse("<>").is_null()


def test_notes_are_callable_and_dict():
    address = Address.parse("<a@b.test>")
    address.notes("key", 1)
    assert address.notes["key"] == 1 and address.notes("key") == 1
