"""# auth/auth_imap

Authenticates AUTH PLAIN and AUTH LOGIN users by logging in to an IMAP
server with the same user name and password (IMAP `LOGIN`).

## Configuration

In `config/plugins`:

    auth/auth_imap 192.168.0.1 143

The first argument (required) is the IMAP server's host name or address,
the second its port (default 143).  Further arguments are ignored with a
warning.  The plugin waits at most 10 seconds for the server.

As the password is needed in clear, CRAM-MD5 is not offered by this
plugin; use TLS between the client and qpsmtpd, and a trusted network (or
a local server) between qpsmtpd and the IMAP server: the plugin speaks
plain IMAP.

## Results

* the server answers `OK` to LOGIN: `OK` (`auth_imap/<mechanism>`);
* it answers `NO`/`BAD`: `DENY`, `auth_imap - invalid password for <user> at <host:port>`;
* it cannot be reached or answers nonsense: `DENY`, `auth_imap - could not connect to <host:port>`.

The user name and password are sent as IMAP quoted strings, or as
literals when they hold characters a quoted string cannot carry.
"""

import re
from qpsmtpd.constants import OK, DENY, DECLINED, LOGERROR, LOGINFO
from qpsmtpd.args import Arguments, Option

arguments = Arguments(
    positional=(Option("server", help="the IMAP server"),
                Option("port", kind="int", default=143, minimum=1, maximum=65535)),
)

TIMEOUT = 10.0


def register(self, qp, *args):
    server = self.opts["server"]
    if not server:
        raise ValueError("No IMAP server specified in plugins file.")
    if not re.fullmatch(r"[\w.\-]+", server):
        raise ValueError(f"Bad data in imap server: {server}")
    self.imap_server = server
    self.imap_port = self.opts["port"]
    self.register_hook("auth-login", "auth_imap")
    self.register_hook("auth-plain", "auth_imap")


def auth_imap(self, transaction, mechanism, user, pass_clear, pass_hash, ticket=None):
    where = f"{self.imap_server}:{self.imap_port}"
    self.log(LOGINFO, "SMTP server requires IMAP authentication before sending")
    if not pass_clear:
        return DECLINED
    try:
        answer = self.imap_login(user, pass_clear)
    except OSError as error:
        self.log(LOGERROR, f"IMAP server {where}: {error}")
        return DENY, f"auth_imap - could not connect to {where}"
    if answer == "OK":
        self.log(LOGINFO, f"Authenticating user: {user} with IMAP")
        return OK, f"auth_imap/{mechanism}"
    return DENY, f"auth_imap - invalid password for {user} at {where}"


def imap_login(self, user, password):
    """'OK', 'NO' or 'BAD' (the tagged answer to LOGIN); OSError when the server fails us."""
    import socket
    with socket.create_connection((self.imap_server, self.imap_port), timeout=TIMEOUT) as sock:
        reader = sock.makefile("rb")
        greeting = reader.readline(8192)
        if not greeting.startswith(b"* OK"):
            raise OSError(f"unexpected greeting {greeting[:80]!r}")
        sock.sendall(b"A001 LOGIN ")
        _send_string(sock, reader, user.encode("utf-8", "surrogateescape"))
        sock.sendall(b" ")
        _send_string(sock, reader, password.encode("utf-8", "surrogateescape"))
        sock.sendall(b"\r\n")
        answer = _tagged_answer(reader, b"A001")
        try:
            sock.sendall(b"A002 LOGOUT\r\n")
        except OSError:
            pass
        return answer


def _send_string(sock, reader, value):
    if re.fullmatch(rb"[\x20-\x7e]*", value):
        sock.sendall(b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"')
        return
    sock.sendall(b"{%d}\r\n" % len(value))
    reply = reader.readline(8192)
    if not reply.startswith(b"+"):
        raise OSError(f"literal refused: {reply[:80]!r}")
    sock.sendall(value)


def _tagged_answer(reader, tag):
    while True:
        line = reader.readline(65536)
        if not line:
            raise OSError("IMAP server closed the connection")
        if line.startswith(tag + b" "):
            status = line[len(tag) + 1:].split(b" ", 1)[0].upper()
            return status.decode("ascii", "replace")
