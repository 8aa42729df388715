"""auth/auth_vpopmail_sql against a real MariaDB server (mariadb-install-db into a
private directory, socket there, TCP on 127.0.0.1) holding vpopmail's table,
through PyMySQL."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import subprocess
import time

import pytest
from components import free_port
from components_ported import mariadb
from qpsmtpd.testing import run_session

pytestmark = pytest.mark.components


def md5_crypt(password: str) -> str:
    return subprocess.run(["openssl", "passwd", "-1", password], capture_output=True, text=True,
                          check=True).stdout.strip()


# vpopmail's own table definition (vmysql.h, with --enable-clear-passwd)
SCHEMA = """
CREATE DATABASE vpopmail;
CREATE TABLE vpopmail.vpopmail (
  pw_name char(32) NOT NULL, pw_domain char(96) NOT NULL, pw_passwd char(40),
  pw_uid int, pw_gid int, pw_gecos char(48), pw_dir char(160), pw_shell char(20),
  pw_clear_passwd char(16), PRIMARY KEY (pw_name, pw_domain));
CREATE USER 'vpopmailuser'@'%' IDENTIFIED BY 'vpoppasswd';
CREATE USER 'vpopmailuser'@'localhost' IDENTIFIED BY 'vpoppasswd';
GRANT SELECT ON vpopmail.* TO 'vpopmailuser'@'%';
GRANT SELECT ON vpopmail.* TO 'vpopmailuser'@'localhost';
"""


@pytest.fixture(scope="module")
def db():
    rows = [("alice", "example.test", md5_crypt("s3cret"), ""),
            ("bob", "example.test", md5_crypt("hunter2"), "hunter2"),
            ("ghost", "example.test", "", "")]
    values = ", ".join(f"('{name}', '{domain}', '{crypted}', 0, 0, '', '/x', 'NOQUOTA', '{clear}')"
                       for name, domain, crypted, clear in rows)
    with mariadb(SCHEMA + f"INSERT INTO vpopmail.vpopmail VALUES {values};") as server:
        yield server


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def plain(user: str, password: str) -> str:
    return "AUTH PLAIN " + b64(f"\0{user}\0{password}")


def session(db, lines, **config):
    config.setdefault("vpopmail_mysql_dsn", f"dbi:mysql:dbname=vpopmail;host=127.0.0.1;port={db.port}")
    return run_session(["EHLO client.test", *lines, "QUIT"],
                       config={"plugins": ["auth/auth_vpopmail_sql"], "me": "mx.example.test", "loglevel": "7",
                               **config})


def test_plain_against_the_crypt_password(db):
    result = session(db, [plain("Alice@Example.TEST", "s3cret")])
    assert result.replies()[2] == (235, [("2.7.0 PLAIN authentication successful for Alice@Example.TEST"
                                          " - auth_vpopmail_sql")])
    assert any("pass: crypt match" in line for line in result.log)


def test_login_against_the_clear_password_over_the_socket(db):
    result = session(db, ["AUTH LOGIN", b64("bob@example.test"), b64("hunter2")],
                     vpopmail_mysql_dsn=f"dbi:mysql:dbname=vpopmail;host=localhost;mysql_socket={db.socket_path}")
    assert [code for code, _ in result.replies()[2:5]] == [334, 334, 235]


def test_wrong_password_and_empty_row_are_denied(db):
    code, lines = session(db, [plain("alice@example.test", "wrong")]).replies()[2]
    assert code == 535 and lines[0].endswith(" - auth_vpopmail_sql - wrong password")
    code, lines = session(db, [plain("ghost@example.test", "anything")]).replies()[2]
    assert code == 535 and lines[0].endswith(" - auth_vmysql - no such user")


def test_unknown_user_and_missing_domain_decline(db):
    for user, log in (("carol@example.test", "skip: no such user"), ("alice", "skip: missing domain")):
        result = session(db, [plain(user, "s3cret")])
        code, lines = result.replies()[2]
        assert code == 535 and lines[0].endswith("from 192.0.2.1"), lines
        assert any(log in line for line in result.log)


def test_user_name_is_a_bound_parameter_not_sql(db):
    result = session(db, [plain("x' OR '1'='1@example.test", "s3cret")])
    assert result.replies()[2][0] == 535


@pytest.fixture
def fixed_ticket(monkeypatch):
    monkeypatch.setattr(secrets, "randbelow", lambda n: 0xABCDEF)
    monkeypatch.setattr(time, "time", lambda: 0x6B000000)
    return "<abcdef.6b000000@mx.example.test>"


def cram(ticket: str, user: str, password: str) -> str:
    return b64(f"{user} {hmac.new(password.encode(), ticket.encode(), hashlib.md5).hexdigest()}")


def test_cram_md5_needs_the_clear_password(db, fixed_ticket):
    result = session(db, ["AUTH CRAM-MD5", cram(fixed_ticket, "bob@example.test", "hunter2")])
    assert result.replies()[3][0] == 235
    result = session(db, ["AUTH CRAM-MD5", cram(fixed_ticket, "alice@example.test", "s3cret")])
    assert result.replies()[3][0] == 535
    assert any("cram-md5 not supported w/o clear pass" in line for line in result.log)


def test_database_down_or_wrong_credentials_decline(db):
    result = session(db, [plain("alice@example.test", "s3cret")],
                     vpopmail_mysql_dsn=f"dbi:mysql:dbname=vpopmail;host=127.0.0.1;port={free_port()}")
    assert result.replies()[2][0] == 535
    assert any("skip: db connection failed" in line for line in result.log)
    result = session(db, [plain("alice@example.test", "s3cret")], vpopmail_mysql_pass="wrong")
    assert result.replies()[2][0] == 535
    assert any("skip: db connection failed" in line for line in result.log)
