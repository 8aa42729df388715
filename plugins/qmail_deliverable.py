"""# qmail_deliverable — refuse recipients that qmail-deliverabled says have no mailbox

Asks a running qmail-deliverabled (from the Perl distribution
Qmail-Deliverable, usually run as root beside qmail and vpopmail) whether
each recipient can be delivered to, and refuses the ones it says cannot:

    550 Sorry, no mailbox by that name. qd (#5.1.1)

If the daemon cannot be reached or answers something unexpected,
deliverability is assumed (the recipient goes on to the next plugin).
Relay clients and whitelisted hosts or senders are not checked.

## Configuration

In `config/plugins`:

    qmail_deliverable [server HOST:PORT] [reject 0|1|naughty|...] [vpopmail_ext 0|1]

* `server HOST:PORT` — the daemon (default `127.0.0.1:8998`).
* `server smtproutes:HOST:PORT` — ask the host that `smtproutes` names for
  the recipient's domain (exact domain, then `.parent.domain` entries, then
  the default route `:host`), at the given port; HOST for domains without a
  route.  `server smtproutes:PORT` (no host) skips the check for domains
  without a route.  `smtproutes` is read like any config file (the config
  dir, then `/var/qmail/control/smtproutes`).
* `reject` — `0` only logs, `naughty` leaves the rejection to the `naughty`
  plugin, `1` (the default) rejects at RCPT; `reject_type` works as for the
  other policy plugins.
* `vpopmail_ext` — accepted for old configurations; it is a setting of
  qmail-deliverabled's side (the client never sends it).
* `timeout` — seconds to wait for the daemon (default 10; an addition of
  this port, the Perl client waited LWP's 180 seconds).

An odd number of arguments is logged and the defaults are used.

## The protocol

`GET /qd1/deliverable?<URL-escaped address>` over HTTP/1.0; a `200`
answer's body is a number.  The recipient is lower-cased first, and an
address that is not RFC 2822 atext (`user@domain`) is not asked about.

| answer | meaning | result |
| --- | --- | --- |
| 0 | no such mailbox | karma -1, the rejection above |
| 0x14 (20) | an ezmlm list: refused for the null sender (`550 mailing lists do not accept null senders`, karma -1) | else `DECLINED` |
| 0x11, 0x12, 0x13, 0x21, 0x22, 0xf1-0xf6, 0xfe, 0xff | permission failure, program delivery, bouncesaying, group-writable, sticky home, normal, vpopmail dir/alias/catchall/vuser/qmail-ext, should not happen, not local | logged, `DECLINED` |
| `204`, another HTTP status, a body that is not a number, no connection | daemon trouble | logged (`error, ...`), `DECLINED` |
"""

from __future__ import annotations

from qpsmtpd.args import Arguments, Option
from qpsmtpd.constants import DECLINED, DENY, LOGDEBUG, LOGINFO, LOGWARN
from qpsmtpd.plugin import Plugin

DEFAULT_SERVER = "127.0.0.1:8998"
TIMEOUT = 10.0
MAX_RESPONSE = 65536
EZMLM_LIST = 0x14
DAEMON_ERROR = 0x2F
KNOWN = {
    0x11: "error, permission failure",
    0x12: "pass, qmail-command in dot-qmail",
    0x13: "pass, bouncesaying with program",
    0x21: "Temporarily undeliverable: group/world writable",
    0x22: "Temporarily undeliverable: sticky home directory",
    0xF1: "pass, normal delivery",
    0xF2: "pass, vpopmail dir",
    0xF3: "pass, vpopmail alias",
    0xF4: "pass, vpopmail catchall",
    0xF5: "pass, vpopmail vuser",
    0xF6: "pass, vpopmail qmail-ext",
    0xFE: "error, SHOULD NOT HAPPEN",
    0xFF: "fail, address not local",
}
ATEXT = "A-Za-z0-9!#$%&'*+/=?^_`{|}~-"


class DaemonError(Exception):
    """qmail-deliverabled could not be asked or gave no usable answer."""


class QmailDeliverable(Plugin):
    arguments = Arguments(
        Option("server", help="HOST:PORT, or smtproutes:[HOST:]PORT"),
        Option("reject", help="0, 1, naughty, or a reject type"),
        Option("reject_type"),
        Option("vpopmail_ext", help="qmail-deliverabled's setting; not used by the client"),
        Option("timeout", kind="float", default=TIMEOUT, minimum=0.1, help="seconds to wait for the daemon"),
    )

    def register(self, qp, *args) -> None:
        if len(args) % 2:
            self.log(LOGWARN, "Odd number of arguments, using default config")
            self.opts = {key: None for key in self.opts} | {"timeout": TIMEOUT}
        server = self.opts.get("server") or DEFAULT_SERVER
        self.smtproutes: dict[str, str] | None = None
        self.fallback_server: str | None = server
        self.route_port = ""
        if server.startswith("smtproutes:"):
            self.configure_smtproutes(server[len("smtproutes:"):])
        self.register_hook("rcpt", "rcpt_handler")

    def check_config(self) -> list[str]:
        """Problems for --check-config."""
        server = self.fallback_server
        if server is None:
            return []
        host, _colon, port = server.rpartition(":")
        if not host or not port.isdigit():
            return [f"server {server!r} is not HOST:PORT"]
        return []

    def configure_smtproutes(self, spec: str) -> None:
        host, _colon, port = spec.rpartition(":")
        self.route_port = port
        self.fallback_server = f"{host}:{port}" if host else None
        routes: dict[str, str] = {}
        for line in self.qp.config("smtproutes"):
            domain, colon, rest = line.partition(":")
            if not colon:
                continue
            relay = rest.strip().removeprefix("[")
            end = len(relay)
            for stop in ("]", ":", " ", "\t"):
                if stop in relay:
                    end = min(end, relay.index(stop))
            routes[domain.strip().lower()] = relay[:end]
        self.smtproutes = routes

    def server_for(self, domain: str) -> str | None:
        """The HOST:PORT to ask about `domain`; None: no server, do not ask."""
        if self.smtproutes is None:
            return self.fallback_server
        route = self.route_for(domain.lower())
        if route is not None:
            return f"{route}:{self.route_port}"
        return self.fallback_server

    def route_for(self, domain: str) -> str | None:
        routes = self.smtproutes or {}
        if domain in routes:
            return routes[domain] or None
        labels = domain.split(".")
        for start in range(len(labels)):
            wildcard = "." + ".".join(labels[start:])
            if wildcard in routes:
                return routes[wildcard] or None
        return routes.get("") or None

    def rcpt_handler(self, transaction, recipient, *params):
        if self.is_immune():
            return DECLINED
        address = recipient.address
        self.log(LOGDEBUG, f"Checking deliverability for recipient '{address}'")
        code = self.deliverable(address, recipient.host or "")
        if code is None:
            self.log(LOGWARN, f"error (unknown) checking '{address}'")
            return DECLINED
        if code == EZMLM_LIST:
            sender = transaction.sender.address if transaction.sender else ""
            if not sender or sender == "<>":
                self.adjust_karma(-1)
                return DENY, "mailing lists do not accept null senders"
            self.log(LOGINFO, "pass, ezmlm list")
            return DECLINED
        if code:
            self.log(LOGINFO, KNOWN.get(code, f"error, unknown: 0x{code:02x}"))
            return DECLINED
        self.adjust_karma(-1)
        return self.get_reject("Sorry, no mailbox by that name. qd (#5.1.1)")

    def deliverable(self, address: str, domain: str) -> int | None:
        """qmail-deliverabled's answer; DAEMON_ERROR when it could not be asked; None for a bad address."""
        import re
        address = address.lower()
        if not re.fullmatch(rf"(?!.*@.*@)([{ATEXT}]+(?:[@.][{ATEXT}]+)*)\.?", address):
            return None
        server = self.server_for(domain)
        if server is None:
            self.log(LOGINFO, "error, No SERVER defined; connection not attempted")
            return DAEMON_ERROR
        try:
            return ask_daemon(server, address.rstrip("."), self.opts["timeout"] or TIMEOUT)
        except DaemonError as error:
            self.log(LOGINFO, f"error, Server {server} unreachable or broken! ({error})")
            return DAEMON_ERROR


def ask_daemon(server: str, address: str, timeout: float = TIMEOUT) -> int:
    """GET /qd1/deliverable?<address> from `server` (HOST:PORT); the number it answered."""
    import socket
    from urllib.parse import quote
    host, _colon, port = server.rpartition(":")
    if not host or not port.isdigit():
        raise DaemonError(f"bad server {server!r}")
    request = (f"GET /qd1/deliverable?{quote(address, safe='')} HTTP/1.0\r\n"
               f"Host: {server}\r\nConnection: close\r\n\r\n").encode("ascii")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as sock:
            sock.sendall(request)
            response = b""
            while len(response) <= MAX_RESPONSE:
                chunk = sock.recv(8192)
                if not chunk:
                    break
                response += chunk
    except OSError as error:
        raise DaemonError(str(error) or type(error).__name__) from None
    head, separator, body = response.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if not separator or len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise DaemonError("no HTTP response")
    if parts[1] != "200":
        raise DaemonError(status_line)
    text = body.strip().decode("ascii", "replace")
    if not text.isdigit():
        raise DaemonError(f"answer is not a number: {text[:40]!r}")
    return int(text)
