"""auth/auth_ldap_bind against a real OpenLDAP slapd started with a private
slapd.conf and a small tree (two people), through the ldap3 client."""

from __future__ import annotations

import base64

import pytest
from components import free_port
from components_ported import slapd
from qpsmtpd.testing import run_session

pytestmark = pytest.mark.components

SUFFIX = "dc=example,dc=test"
TREE = f"""\
dn: {SUFFIX}
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ou=people,{SUFFIX}
objectClass: organizationalUnit
ou: people

dn: uid=alice,ou=people,{SUFFIX}
objectClass: inetOrgPerson
uid: alice
cn: Alice
sn: A
userPassword: s3cret

dn: uid=bob,ou=people,{SUFFIX}
objectClass: inetOrgPerson
uid: bob
cn: Bob
sn: B
mail: bob@example.test
userPassword: hunter2
"""


@pytest.fixture(scope="module")
def ldap():
    with slapd(SUFFIX, TREE) as daemon:
        yield daemon


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def plain(user: str, password: str) -> str:
    return "AUTH PLAIN " + b64(f"\0{user}\0{password}")


def session(ldap, lines, plugin_args="", ldap_config=None):
    config_lines = ldap_config if ldap_config is not None else [
        f"ldap_base ou=people, {SUFFIX}", "ldap_host 127.0.0.1", f"ldap_port {ldap.port}", "ldap_timeout 3"]
    return run_session(["EHLO client.test", *lines, "QUIT"],
                       config={"plugins": [f"auth/auth_ldap_bind {plugin_args}".strip()], "ldap": config_lines,
                               "me": "mx.example.test", "loglevel": "7"})


def test_bind_with_the_right_password(ldap):
    result = session(ldap, [plain("Alice@Example.Test", "s3cret")])
    code, lines = result.replies()[2]
    assert code == 235
    assert lines == ["2.7.0 PLAIN authentication successful for Alice@Example.Test - authldap"]
    assert any("pass: Alice@Example.Test auth success" in line for line in result.log)
    assert not any("s3cret" in line for line in result.log)


def test_auth_login(ldap):
    result = session(ldap, ["AUTH LOGIN", b64("bob"), b64("hunter2")])
    assert [code for code, _ in result.replies()[2:5]] == [334, 334, 235]


def test_wrong_password_unknown_user_and_filter_characters_fail(ldap):
    for user, password, log in (("alice", "wrong", "fail: error in user bind"),
                                ("carol", "s3cret", "fail: user not found"),
                                ("*", "s3cret", "fail: user not found"),
                                ("a*)(uid=*", "s3cret", "fail: user not found")):
        result = session(ldap, [plain(user, password)])
        assert result.replies()[2][0] == 535, user
        assert any(log in line for line in result.log), (user, result.log)


def test_empty_password_is_not_an_anonymous_bind(ldap):
    for lines in (["AUTH LOGIN", b64("alice"), "="], [plain("alice", "")]):
        result = session(ldap, lines)
        assert result.replies()[-2][0] == 535
        assert not any("auth success" in line for line in result.log)


def test_plugin_arguments_override_config_ldap(ldap):
    stale = ["ldap_base ou=nowhere,dc=example,dc=test", "ldap_port 1"]
    result = session(ldap, [plain("bob", "hunter2")],
                     plugin_args=f"ldap_base ou=people,{SUFFIX} ldap_port {ldap.port}", ldap_config=stale)
    assert result.replies()[2][0] == 235


def test_directory_down_is_a_temporary_skip(ldap):
    result = session(ldap, [plain("alice", "s3cret")],
                     ldap_config=[f"ldap_base {SUFFIX}", f"ldap_port {free_port()}", "ldap_timeout 2"])
    assert result.replies()[2][0] == 535
    assert any("skip:" in line for line in result.log)


def test_without_ldap_base_nobody_gets_in(ldap):
    result = session(ldap, [plain("alice", "s3cret")], ldap_config=[f"ldap_port {ldap.port}"])
    assert result.replies()[2][0] == 535
    assert any("skip: please configure ldap_base" in line for line in result.log)


def test_missing_ldap3_is_a_load_error_naming_the_packages(ldap, monkeypatch):
    from qpsmtpd import optional
    monkeypatch.setitem(optional._found, "ldap3", False)
    result = session(ldap, [plain("alice", "s3cret")])
    assert result.codes()[0] == 421
    assert any("apt-get install python3-ldap3" in line and "pip install ldap3" in line for line in result.log)
