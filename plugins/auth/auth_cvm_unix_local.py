"""# auth/auth_cvm_unix_local — AUTH PLAIN and LOGIN against a CVM module (cvm-unix, cvm-pwfile, ...)

Authenticates AUTH PLAIN and AUTH LOGIN users against a CVM (Credential
Validation Module, Bruce Guenther's cvm) listening on a local (unix)
socket: `cvm-unix` for the system's accounts, `cvm-pwfile` for a private
password file, `cvm-vmailmgr`, `cvm-qmail`, ...

## Configuration

In `config/plugins`:

    auth/auth_cvm_unix_local cvm_socket /var/lib/cvm/cvm-unix-local.socket enable_smtp no enable_ssmtp yes

* `cvm_socket` — the path of the module's socket (required).  Start the
  module with it, for example (Debian package `cvm`):

      cvm-unix cvm-local:/var/lib/cvm/cvm-unix-local.socket
      CVM_PWFILE_PATH=/etc/qpsmtpd/smtp-passwd cvm-pwfile cvm-local:/run/cvm/pwfile.socket

  The smtpd user needs write permission on the socket.
* `enable_smtp` — `yes` to offer AUTH on port 25 and 587 (default `no`:
  on those ports the plugin registers nothing).
* `enable_ssmtp` — `no` to refuse AUTH on port 465 (default `yes`).

The port is the environment variable `PORT` when set, else the local port
of the connection (`TCPLOCALPORT` under tcpserver); `SMTPS=1` counts as
port 465.  Started once per connection (tcpserver, xinetd, systemd), the
plugin registers nothing on a disabled port, so AUTH is not offered there
(unless another auth plugin offers it); under `qpsmtpd.py --listen`, which
loads the plugins once for all ports, it declines on a disabled port.  Without `cvm_socket`, or when it is not a socket, the plugin
logs an error and registers nothing.

CRAM-MD5 is not offered: CVM needs the clear-text password.

## The protocol

One connection per attempt, CVM protocol version 1: the byte 1, the
account name, the domain (the part after `@` in the AUTH user name,
`localhost` when there is none) and the password, each ended by a NUL, and
a final NUL.  The first byte of the answer is the result.  The module has
10 seconds to answer.

## Results

| situation | result | client sees |
| --- | --- | --- |
| CVM answered 0 | `OK` | `235 ... - auth success for <user>` |
| CVM answered 100 (wrong credentials) | `DENY` | `535 ... - auth failure (100)` |
| CVM answered another code (temporary failure) | `DECLINED` | the next auth plugin decides |
| no answer | `DECLINED` | the next auth plugin decides |
| socket cannot be reached | `DENY` | `535 ... - authcvm, connection failed` |
| user name or password with a NUL byte | `DENY` | `535 ... - authcvm, invalid username` / `invalid password` |

The log says `pass: authentication for: <user>`, `fail: authentication
failure for: <user>`, or `skip: ...` with the reason.
"""

from __future__ import annotations

import os
import stat

from qpsmtpd.args import Arguments, Option
from qpsmtpd.constants import DECLINED, DENY, LOGDEBUG, LOGERROR, LOGINFO, OK
from qpsmtpd.plugin import Plugin

TIMEOUT = 10.0
SMTP_PORTS = ("25", "587")
SSMTP_PORT = "465"
CVM_OK = 0
CVM_CREDENTIALS_REJECTED = 100


class AuthCvmUnixLocal(Plugin):
    arguments = Arguments(
        Option("cvm_socket", help="path of the CVM module's unix socket"),
        Option("enable_smtp", kind="bool", default=False, help="offer AUTH on ports 25 and 587"),
        Option("enable_ssmtp", kind="bool", default=True, help="offer AUTH on port 465"),
    )

    def register(self, qp, *args) -> None:
        socket_path = self.opts["cvm_socket"]
        if not socket_path:
            self.log(LOGERROR, "skip: requires cvm_socket argument")
            return
        if not self.port_enabled():
            return
        if not _is_socket(socket_path):
            self.log(LOGERROR, "skip: cvm_socket missing or not usable")
            return
        self.cvm_socket = socket_path
        self.register_hook("auth-plain", "authcvm_plain")
        self.register_hook("auth-login", "authcvm_plain")

    def check_config(self) -> list[str]:
        """Problems for --check-config."""
        socket_path = self.opts["cvm_socket"]
        if not socket_path:
            return ["cvm_socket is required"]
        if not _is_socket(socket_path):
            return [f"cvm_socket {socket_path} is missing or not a socket (is the CVM module running?)"]
        return []

    def listening_port(self) -> str:
        """The port the client connected to; "" when not known yet (a forkserver loading its plugins)."""
        if os.environ.get("PORT"):
            return os.environ["PORT"]
        if os.environ.get("SMTPS", "0") not in ("", "0"):
            return SSMTP_PORT
        return self.connection.local_port

    def port_enabled(self) -> bool:
        port = self.listening_port()
        if port in SMTP_PORTS and not self.opts["enable_smtp"]:
            self.log(LOGDEBUG, "skip: enable_smtp=no")
            return False
        if port == SSMTP_PORT and not self.opts["enable_ssmtp"]:
            self.log(LOGDEBUG, "skip: enable_ssmtp=no")
            return False
        return True

    def authcvm_plain(self, transaction, method, user, pass_clear, pass_hash, ticket=None):
        if not self.port_enabled():  # plugins loaded once for many ports (forkserver)
            return DECLINED
        if "\0" in user:
            self.log(LOGERROR, "deny: invalid username")
            return DENY, "authcvm, invalid username"
        if pass_clear is None or "\0" in pass_clear:
            self.log(LOGERROR, "deny: invalid password")
            return DENY, "authcvm, invalid password"
        account, _at, domain = user.partition("@")
        try:
            status = self.ask_cvm(account, domain or "localhost", pass_clear)
        except OSError as error:
            self.log(LOGERROR, f"skip: socket connection attempt for: {user} ({error})")
            return DENY, "authcvm, connection failed"
        if status is None:
            self.log(LOGERROR, f"skip: no response from cvm for {user}")
            return DECLINED
        if status == CVM_OK:
            self.log(LOGINFO, f"pass: authentication for: {user}")
            return OK, f"auth success for {user}"
        if status == CVM_CREDENTIALS_REJECTED:
            self.log(LOGINFO, f"fail: authentication failure for: {user}")
            return DENY, "auth failure (100)"
        self.log(LOGERROR, f"skip: unknown response from cvm for {user}")
        return DECLINED, f"unknown result code ({status})"

    def ask_cvm(self, account: str, domain: str, password: str) -> int | None:
        """The module's result code, None when it closed without one; OSError when unreachable."""
        import socket
        request = b"\x01" + b"".join(
            part.encode("utf-8", "surrogateescape") + b"\0" for part in (account, domain, password)) + b"\0"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(TIMEOUT)
            sock.connect(self.cvm_socket)
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)
            try:
                answer = sock.recv(1)
            except TimeoutError:
                return None
        return answer[0] if answer else None


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False
