"""--check-config with the plugins ported from the Perl qpsmtpd (issue 16): each
one's own check (socket, database, program, DSN, ldap_base) fails with its
message, and passes once the thing exists."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.components  # ldap3, PyMySQL and maxminddb must be importable

QPSMTPD = Path(__file__).resolve().parent.parent / "qpsmtpd.py"


def check(config_dir: Path, plugins: list[str]) -> subprocess.CompletedProcess:
    (config_dir / "plugins").write_text("\n".join(plugins) + "\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("QPSMTPD", "TCP", "SMTPS"))}
    env["QPSMTPD_CONFIG"] = str(config_dir)
    return subprocess.run([sys.executable, str(QPSMTPD), "--check-config"], env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def listening_socket(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(1)
    return sock


def test_each_ported_plugin_reports_its_problem_then_passes(tmp_path):
    config = tmp_path / "config"
    config.mkdir()
    (config / "spool_dir").write_text(str(tmp_path / "spool") + "\n")
    (config / "vpopmail_mysql_dsn").write_text("dbi:Pg:dbname=vpopmail\n")
    broken = [f"auth/auth_cvm_unix_local cvm_socket {tmp_path}/cvm.sock",
              "auth/auth_ldap_bind",
              "auth/auth_vpopmail_sql",
              f"ident/p0f {tmp_path}/p0f.sock",
              f"ident/geoip db_dir {tmp_path}/GeoIP",
              "qmail_deliverable server localhost",
              f"queue/exim-bsmtp exim_path {tmp_path}/exim4"]
    result = check(config, broken)
    assert result.returncode == 1, result.stdout + result.stderr
    for expected in (f"cvm_socket {tmp_path}/cvm.sock is missing or not a socket",
                     "ldap_base is not set",
                     "vpopmail_mysql_dsn: not a dbi:mysql data source",
                     f"p0f API socket {tmp_path}/p0f.sock: No such file or directory",
                     f"no GeoIP2/GeoLite2 City or Country .mmdb in {tmp_path}/GeoIP",
                     "server 'localhost' is not HOST:PORT",
                     f"Exim program {tmp_path}/exim4 is missing"):  # the engine's check (checkconfig)
        assert expected in result.stdout, (expected, result.stdout)

    cvm, p0f = listening_socket(tmp_path / "cvm.sock"), listening_socket(tmp_path / "p0f.sock")
    (tmp_path / "GeoIP").mkdir()
    (tmp_path / "GeoIP" / "GeoLite2-Country.mmdb").write_bytes(b"\0")
    (tmp_path / "exim4").write_text("#!/bin/sh\nexit 0\n")
    (tmp_path / "exim4").chmod(0o755)
    (config / "vpopmail_mysql_dsn").write_text("dbi:mysql:dbname=vpopmail;host=127.0.0.1\n")
    (config / "ldap").write_text("ldap_base ou=people, dc=example, dc=test\n")
    fixed = [line.replace("server localhost", "server 127.0.0.1:8998") for line in broken]
    try:
        result = check(config, fixed)
    finally:
        cvm.close()
        p0f.close()
    assert result.returncode == 0, result.stdout + result.stderr
    for line in fixed:
        assert f"ok     plugins: {line}" in result.stdout, (line, result.stdout)
