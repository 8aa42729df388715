"""Real daemons for the tests of the plugins ported from the Perl qpsmtpd (issue 16).

Each ``with`` helper starts one real daemon in a private directory (unix
sockets there, TCP on a free 127.0.0.1 port), waits until it answers its
protocol, yields a description and stops it on exit, using the life cycle
of ``components`` (``Daemon``, ``_running``): a missing binary or a daemon
that does not come up raises ``ComponentError`` with its log, never a skip.

* ``cvm_pwfile(passwd_lines)`` — Debian's ``cvm-pwfile`` serving a private
  password file on a ``cvm-local:`` socket.
* ``slapd(suffix, ldif)`` — OpenLDAP's ``slapd`` with a private slapd.conf
  (mdb backend) and a tree loaded with ``slapadd``, on 127.0.0.1.
* ``mariadb(sql)`` — MariaDB's ``mariadbd`` on a data directory made by
  ``mariadb-install-db``, socket in its private directory and a TCP port on
  127.0.0.1; ``sql`` is run as root once it is up.
* ``p0f()`` — p0f 3 sniffing the loopback interface (root) for one TCP
  port, answering on its API socket; ``P0f.fingerprint_localhost()`` makes a
  real TCP connection to that port so p0f learns 127.0.0.1 (or ::1).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path

from components import (
    LOCALHOST,
    ComponentError,
    Daemon,
    _running,
    _spawn,
    find_binary,
    free_port,
    private_dir,
)


def _unix_socket_answers(path: Path) -> bool:
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


# --------------------------------------------------------------------------
# cvm (Credential Validation Modules)
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Cvm(Daemon):
    socket_path: Path = Path()
    passwd_path: Path = Path()


@contextlib.contextmanager
def cvm_pwfile(passwd_lines: Sequence[str]) -> Iterator[Cvm]:
    """``cvm-pwfile cvm-local:<dir>/cvm.sock`` over a private passwd-format file (clear-text passwords)."""
    binary = find_binary("cvm-pwfile")

    def start() -> Cvm:
        base = private_dir("qpsmtpd-cvm-")
        passwd = base / "passwd"
        passwd.write_text("".join(line + "\n" for line in passwd_lines))
        sock = base / "cvm.sock"
        env = {**os.environ, "CVM_PWFILE_PATH": str(passwd)}
        proc = _spawn([binary, f"cvm-local:{sock}"], base / "cvm.log", env=env)
        return Cvm("cvm-pwfile", proc, base, base / "cvm.log", socket_path=sock, passwd_path=passwd)

    with _running(start, lambda daemon: lambda: _unix_socket_answers(daemon.socket_path)) as daemon:
        yield daemon


# --------------------------------------------------------------------------
# slapd (OpenLDAP)
# --------------------------------------------------------------------------

SLAPD_CONF = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
pidfile {base}/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
maxsize 10485760
suffix "{suffix}"
rootdn "cn=admin,{suffix}"
directory {base}/db
"""


def _tcp_answers(port: int) -> bool:
    try:
        with socket.create_connection((LOCALHOST, port), timeout=1.0):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def slapd(suffix: str, ldif: str) -> Iterator[Daemon]:
    """``slapd -d 0`` (foreground) serving ``ldif`` below ``suffix``; anonymous read, simple binds."""
    binary = find_binary("slapd")
    slapadd = find_binary("slapadd")

    def start() -> Daemon:
        import subprocess
        base = private_dir("qpsmtpd-slapd-")
        (base / "db").mkdir()
        conf = base / "slapd.conf"
        conf.write_text(SLAPD_CONF.format(base=base, suffix=suffix))
        (base / "tree.ldif").write_text(ldif)
        loaded = subprocess.run([slapadd, "-f", str(conf), "-l", str(base / "tree.ldif")],
                                capture_output=True, text=True, timeout=30, check=False)
        if loaded.returncode != 0:
            raise ComponentError(f"slapadd failed: {loaded.stderr}")
        port = free_port()
        proc = _spawn([binary, "-d", "0", "-f", str(conf), "-h", f"ldap://{LOCALHOST}:{port}/"],
                      base / "slapd.log")
        return Daemon("slapd", proc, base, base / "slapd.log", port=port)

    with _running(start, lambda daemon: lambda: _tcp_answers(daemon.port)) as daemon:
        yield daemon


# --------------------------------------------------------------------------
# MariaDB
# --------------------------------------------------------------------------


@dataclasses.dataclass
class MariaDB(Daemon):
    socket_path: Path = Path()

    def sql(self, statements: str) -> str:
        """Run SQL as the server's root user (over the socket); its output."""
        import subprocess
        client = find_binary("mariadb")
        done = subprocess.run([client, "--no-defaults", "-S", str(self.socket_path), "-uroot", "--batch"],
                              input=statements, capture_output=True, text=True, timeout=30, check=False)
        if done.returncode != 0:
            raise ComponentError(f"mariadb client failed: {done.stderr}\n{self.logs()}")
        return done.stdout


@contextlib.contextmanager
def mariadb(sql: str = "") -> Iterator[MariaDB]:
    """A private MariaDB server; ``sql`` (schema, users, rows) run as root once it answers."""
    binary = find_binary("mariadbd")
    install_db = find_binary("mariadb-install-db")

    def start() -> MariaDB:
        import subprocess
        base = private_dir("qpsmtpd-mariadb-")
        data = base / "data"
        installed = subprocess.run([install_db, "--no-defaults", f"--datadir={data}", "--user=root",
                                    "--auth-root-authentication-method=socket", "--skip-test-db"],
                                   capture_output=True, text=True, timeout=120, check=False)
        if installed.returncode != 0:
            raise ComponentError(f"mariadb-install-db failed: {installed.stderr[-2000:]}")
        port = free_port()
        sock = base / "mysqld.sock"
        proc = _spawn([binary, "--no-defaults", f"--datadir={data}", f"--socket={sock}", f"--port={port}",
                       f"--bind-address={LOCALHOST}", "--user=root", f"--pid-file={base}/mysqld.pid",
                       f"--log-error={base}/error.log", "--skip-log-bin", "--innodb-buffer-pool-size=16M",
                       "--skip-name-resolve"], base / "stdout.log")
        return MariaDB("mariadbd", proc, base, base / "error.log", port=port, socket_path=sock,
                       log_paths=[base / "stdout.log"])

    with _running(start, lambda daemon: lambda: _unix_socket_answers(daemon.socket_path), timeout=60) as daemon:
        if sql:
            daemon.sql(sql)
        yield daemon


# --------------------------------------------------------------------------
# p0f 3
# --------------------------------------------------------------------------

P0F_QUERY_MAGIC = 0x50304601
P0F_STATUS_OK = 0x10


@dataclasses.dataclass
class P0f(Daemon):
    socket_path: Path = Path()

    def query_status(self, ip: str) -> int | None:
        """p0f's status for ``ip`` (0x10 known, 0x20 not seen), None when the API does not answer."""
        import struct
        family, kind = (socket.AF_INET6, 6) if ":" in ip else (socket.AF_INET, 4)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(2.0)
                sock.connect(str(self.socket_path))
                sock.sendall(struct.pack("=IB16s", P0F_QUERY_MAGIC, kind, socket.inet_pton(family, ip)))
                answer = sock.recv(232)
        except OSError:
            return None
        return struct.unpack_from("=I", answer, 4)[0] if len(answer) >= 8 else None

    def fingerprint_localhost(self, ip: str = LOCALHOST) -> None:
        """A real TCP connection from ``ip`` to ``ip``:port, then wait until p0f knows the host."""
        import time
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as listener:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((ip, self.port))
            listener.listen(1)
            with socket.create_connection((ip, self.port), timeout=5) as client:
                accepted, _peer = listener.accept()
                with accepted:
                    client.sendall(b"hello")
                    accepted.recv(5)
        deadline = time.monotonic() + 5
        while self.query_status(ip) != P0F_STATUS_OK:
            if time.monotonic() > deadline:
                raise ComponentError(f"p0f did not learn {ip} from a connection to port {self.port}\n{self.logs()}")
            time.sleep(0.02)


@contextlib.contextmanager
def p0f() -> Iterator[P0f]:
    """``p0f -i lo -s <dir>/p0f.sock 'tcp port N'`` in the foreground (needs root for the capture)."""
    from components import require_root
    require_root("p0f (packet capture on lo)")
    binary = find_binary("p0f")

    def start() -> P0f:
        base = private_dir("qpsmtpd-p0f-")
        sock = base / "p0f.sock"
        port = free_port()
        proc = _spawn([binary, "-i", "lo", "-s", str(sock), "-o", str(base / "p0f.log"), f"tcp port {port}"],
                      base / "stderr.log")
        return P0f("p0f", proc, base, base / "stderr.log", port=port, socket_path=sock,
                   log_paths=[base / "p0f.log"])

    with _running(start, lambda daemon: lambda: daemon.query_status("192.0.2.1") is not None) as daemon:
        yield daemon
