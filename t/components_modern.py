"""Real peers for the modern-SMTP tests (issue 17): haproxy, stunnel4 and Dovecot's LMTP.

Each fixture starts the Debian program in the foreground with a private
config in a temp dir, on loopback ports chosen by `free_port` (retried on a
clash) or a unix socket, and stops it afterwards.

* `haproxy(backend_port, modes)` — TCP mode; one frontend per mode:
  `v1` (`send-proxy`), `v2` (`send-proxy-v2`), `v2-ipv6` (the same, listening
  on ::1, so the header carries an IPv6 client), `v2-tls` (TLS terminated by
  haproxy with a throwaway certificate, `send-proxy-v2-ssl-cn` with
  `ssl-cipher,authority` passes the TLS facts as TLVs).  `.ports[mode]` is the frontend's port.
* `stunnel(backend_port)` — a TLS server (`protocol = proxy`: stunnel sends
  a PROXY v1 header to the backend); `.port`, `.cert` (the CA file).
* `dovecot_lmtp()` — Dovecot's `lmtp` service alone (no IMAP, no auth
  daemon): a passwd-file user store (`alice`, `bob`, `carol` in the domain
  `example.test`), mail in `mail/<user>/Maildir`, an LMTP unix socket and a
  TCP listener.  `.maildir(user)` lists the delivered messages.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pwd
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterator

from components import (Daemon, _running, _spawn, find_binary, free_port, make_cert, private_dir)

LOCALHOST = "127.0.0.1"


def port_open(port: int, host: str = LOCALHOST) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def combined_pem(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate; returns (combined cert+key file, cert file)."""
    cert, key = make_cert(directory)
    combined = directory / "combined.pem"
    combined.write_bytes(cert.read_bytes() + key.read_bytes())
    combined.chmod(0o600)
    return combined, cert


# ---------------------------------------------------------------------------
# haproxy
# ---------------------------------------------------------------------------
@dataclasses.dataclass
class Haproxy(Daemon):
    ports: dict[str, int] = dataclasses.field(default_factory=dict)
    cert: Path | None = None


HAPROXY_SERVER_OPTION = {"v1": "send-proxy", "v2": "send-proxy-v2", "v2-ipv6": "send-proxy-v2", "v2-tls": "send-proxy-v2-ssl-cn proxy-v2-options ssl-cipher,authority"}


@contextlib.contextmanager
def haproxy(backend_port: int, modes: tuple[str, ...] = ("v1", "v2", "v2-tls")) -> Iterator[Haproxy]:
    binary = find_binary("haproxy")

    def start() -> Haproxy:
        base = private_dir("haproxy-")
        combined, cert = combined_pem(base)
        ports = {mode: free_port() for mode in modes}
        lines = ["global", "  maxconn 100", f"  pidfile {base}/haproxy.pid",
                 "defaults", "  mode tcp", "  timeout connect 5s", "  timeout client 30s",
                 "  timeout server 30s"]
        for mode in modes:
            name = mode.replace("-", "_")
            tls = f" ssl crt {combined}" if mode == "v2-tls" else ""
            address = f"ipv6@::1:{ports[mode]}" if mode.endswith("ipv6") else f"{LOCALHOST}:{ports[mode]}"
            lines += [f"frontend f_{name}", f"  bind {address}{tls}", f"  default_backend b_{name}",
                      f"backend b_{name}",
                      f"  server s1 {LOCALHOST}:{backend_port} {HAPROXY_SERVER_OPTION[mode]}"]
        config = base / "haproxy.cfg"
        config.write_text("\n".join(lines) + "\n")
        proc = _spawn([binary, "-db", "-f", str(config)], base / "haproxy.log", start_new_session=True)
        return Haproxy("haproxy", proc, base, base / "haproxy.log", ports=ports, cert=cert)

    def ready(daemon: Daemon) -> Callable[[], bool]:
        ports = daemon.ports  # type: ignore[attr-defined]
        return lambda: all(port_open(port, "::1" if mode.endswith("ipv6") else LOCALHOST)
                           for mode, port in ports.items())

    with _running(start, ready) as daemon:
        yield daemon  # type: ignore[misc]


# ---------------------------------------------------------------------------
# stunnel4
# ---------------------------------------------------------------------------
@dataclasses.dataclass
class Stunnel(Daemon):
    cert: Path | None = None


@contextlib.contextmanager
def stunnel(backend_port: int) -> Iterator[Stunnel]:
    binary = find_binary("stunnel4")

    def start() -> Stunnel:
        base = private_dir("stunnel-")
        combined, cert = combined_pem(base)
        port = free_port()
        config = base / "stunnel.conf"
        config.write_text("\n".join([
            "foreground = yes", f"pid = {base}/stunnel.pid", "debug = 5", f"output = {base}/stunnel.log",
            "[smtps]", f"accept = {LOCALHOST}:{port}", f"connect = {LOCALHOST}:{backend_port}",
            f"cert = {combined}", "protocol = proxy", ""]))
        proc = _spawn([binary, str(config)], base / "stunnel.stderr", start_new_session=True)
        return Stunnel("stunnel4", proc, base, base / "stunnel.stderr", port=port, cert=cert,
                       log_paths=[base / "stunnel.log"])

    def ready(daemon: Daemon) -> Callable[[], bool]:
        return lambda: port_open(daemon.port)

    with _running(start, ready) as daemon:
        yield daemon  # type: ignore[misc]


# ---------------------------------------------------------------------------
# Dovecot LMTP
# ---------------------------------------------------------------------------
DOVECOT_USERS = ("alice", "bob", "carol")


@dataclasses.dataclass
class DovecotLmtp(Daemon):
    socket_path: Path | None = None
    mail_dir: Path | None = None
    quotas: dict[str, str | None] = dataclasses.field(default_factory=dict)

    def set_quota(self, user: str, rule: str | None) -> None:
        """Give `user` a quota rule (`*:storage=1K`), or none; Dovecot re-reads the file.

        Dovecot looks at the file's mtime at most once a second: the wait makes the change seen."""
        self.quotas[user] = rule
        write_users(self.base_dir / "users", self.mail_dir, self.quotas)  # type: ignore[arg-type]
        time.sleep(1.1)

    def maildir(self, user: str) -> list[bytes]:
        """Messages delivered to `user` (new/ and cur/), oldest first."""
        assert self.mail_dir is not None
        root = self.mail_dir / user / "Maildir"
        files = [path for sub in ("new", "cur") if (root / sub).is_dir() for path in (root / sub).iterdir()]
        return [path.read_bytes() for path in sorted(files, key=lambda path: path.stat().st_mtime_ns)]


def write_users(path: Path, mail: Path, quotas: dict[str, str | None]) -> None:
    nobody = pwd.getpwnam("nobody")
    lines = []
    for user in DOVECOT_USERS:
        extra = f"userdb_quota_rule={quotas[user]}" if quotas.get(user) else ""
        lines.append(f"{user}:{{PLAIN}}secret:{nobody.pw_uid}:{nobody.pw_gid}::{mail}/{user}::{extra}\n")
    previous = path.stat().st_mtime if path.exists() else 0.0
    temporary = path.with_suffix(".new")
    temporary.write_text("".join(lines), encoding="utf-8")
    temporary.rename(path)
    stamp = max(time.time(), previous + 1)  # Dovecot re-reads the file when its mtime changes
    os.utime(path, (stamp, stamp))


@contextlib.contextmanager
def dovecot_lmtp() -> Iterator[DovecotLmtp]:
    """Dovecot (`dovecot -F`) running only its lmtp service, as root with mail owned by `nobody`.

    The quota plugin is loaded with `quota_full_tempfail = yes`, so a user over quota gets a
    temporary per-recipient failure after DATA (452 4.2.2): a real partial delivery.
    """
    binary = find_binary("dovecot")
    nobody = pwd.getpwnam("nobody")

    def start() -> DovecotLmtp:
        base = private_dir("dovecot-")
        base.chmod(0o755)
        mail = base / "mail"
        mail.mkdir()
        os.chown(mail, nobody.pw_uid, nobody.pw_gid)
        users = base / "users"
        write_users(users, mail, {})
        port = free_port()
        run = base / "run"
        run.mkdir()
        config = base / "dovecot.conf"
        config.write_text("\n".join([
            f"base_dir = {run}", f"state_dir = {base}/state", f"log_path = {base}/dovecot.log",
            f"instance_name = qpsmtpd-test-{base.name}",
            "protocols = lmtp", "ssl = no", "listen = 127.0.0.1",
            "mail_location = maildir:~/Maildir", f"first_valid_uid = {nobody.pw_uid}",
            f"last_valid_uid = {nobody.pw_uid}", "first_valid_gid = 0",
            "default_internal_user = nobody", "default_login_user = nobody", "default_internal_group = nogroup",
            "lmtp_save_to_detail_mailbox = no", "recipient_delimiter = +",
            "mail_plugins = quota", "quota_full_tempfail = yes", "plugin {", "  quota = maildir:User quota", "}",
            "auth_username_format = %n", "lmtp_rcpt_check_quota = no",
            "passdb {", "  driver = passwd-file", f"  args = {users}", "}",
            "userdb {", "  driver = passwd-file", f"  args = {users}", "}",
            "service lmtp {",
            "  unix_listener lmtp {", "    mode = 0666", "  }",
            "  inet_listener lmtp {", "    address = 127.0.0.1", f"    port = {port}", "  }",
            "}",
            "service anvil {", "  chroot =", "}",
            "service stats {", "  unix_listener stats-writer {", "    mode = 0666", "  }", "}",
            ""]), encoding="utf-8")
        (base / "state").mkdir()
        proc = _spawn([binary, "-F", "-c", str(config)], base / "dovecot.stderr", start_new_session=True)
        return DovecotLmtp("dovecot", proc, base, base / "dovecot.stderr", port=port,
                           socket_path=run / "lmtp", mail_dir=mail, log_paths=[base / "dovecot.log"])

    def ready(daemon: Daemon) -> Callable[[], bool]:
        return lambda: port_open(daemon.port) and daemon.socket_path.exists()  # type: ignore[attr-defined]

    with _running(start, ready) as daemon:
        yield daemon  # type: ignore[misc]


def run_quiet(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, timeout=30)
