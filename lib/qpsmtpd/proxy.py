"""PROXY protocol v1 and v2 (HAProxy's), read before the greeting.

A load balancer or TLS terminator (haproxy `send-proxy`/`send-proxy-v2`,
stunnel `protocol = proxy`) opens the TCP connection, so tcpserver and the
forkserver see the balancer's address.  It says who the real client is in a
header sent before any SMTP.  This module reads that header and puts the
client's address, port and (v2) TLS facts into the connection before any
hook runs.

Switched on by `config/proxy_trusted` (one IP address or network a line,
IPv4 or IPv6, `#` comments), or by the `stunnel` plugin with `proxy on`
(which trusts 127.0.0.1 and ::1 when `proxy_trusted` is empty).  Then:

* a connection from a trusted address must start with a PROXY header
  within `proxy_timeout` seconds (default 10); a missing, malformed or
  truncated header ends the connection without a greeting, with a log line;
* a connection from any other address is an ordinary SMTP client: it gets
  the greeting, and if it sends `PROXY ...` it is refused (554) and
  disconnected with a log line (nobody outside may choose its own address);
* v2 `LOCAL` (health checks) and v1 `PROXY UNKNOWN` keep the balancer's
  address, as the specification says.

What the connection holds afterwards: `remote_ip` and `remote_port` of the
real client; `remote_host`/`remote_info` `[ip]` (no reverse lookup here, as
under `tcpserver -H`); `local_ip`/`local_port` stay this socket's (as in
Perl: the port a TLS-terminating stunnel accepted on, 465, must not make the
`tls` plugin start SMTPS on plain text); the notes `proxy` (`YES`),
`protocol` (`TCP4`/`TCP6`), `proxy_version` (1 or 2), `proxy_balancer_ip`,
and Perl stunnel's `remote_ip`/`local_ip`/`remote_port`/`local_port` (the
latter two: the address the client reached at the balancer).  From v2 TLVs:
`proxy_authority` (the SNI), and when the balancer terminated TLS the
notes `tls_enabled` (1), `tls_version`, `tls_cipher`, `tls_client_cn`.  The
environment the super-server set for the balancer (`TCPREMOTEIP`,
`TCPREMOTEPORT` replaced; `TCPREMOTEHOST`, `TCPREMOTEINFO`, `RELAYCLIENT`,
`WHITELISTCLIENT`, `RBLSMTPD` from tcprules removed) follows: a tcprules verdict about the balancer says nothing of the client.
"""

from __future__ import annotations

import os

from .constants import LOGINFO, LOGNOTICE, LOGWARN
from .reader import SmtpIO, Timeout

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .smtp import SMTP

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX = b"PROXY "
V1_MAX = 107  # the whole v1 line, CRLF included
DEFAULT_TIMEOUT = 10.0
STUNNEL_TRUSTED = ("127.0.0.1", "::1")
# environment a super-server set from the balancer's address: not the client's
BALANCER_ENV = ("TCPREMOTEHOST", "TCPREMOTEINFO", "RELAYCLIENT", "WHITELISTCLIENT", "RBLSMTPD")

PP2_TYPE_AUTHORITY = 0x02
PP2_TYPE_SSL = 0x20
PP2_SUBTYPE_SSL_VERSION = 0x21
PP2_SUBTYPE_SSL_CN = 0x22
PP2_SUBTYPE_SSL_CIPHER = 0x23
PP2_CLIENT_SSL = 0x01


class ProxyError(Exception):
    """No valid PROXY header: the connection must end."""


class ProxyHeader:
    """What a PROXY header said."""

    def __init__(self, version: int, command: str, protocol: str = "", remote_ip: str = "",
                 remote_port: str = "", local_ip: str = "", local_port: str = "",
                 tlvs: dict[int, bytes] | None = None) -> None:
        self.version = version
        self.command = command            # "PROXY", "LOCAL" (v2) or "UNKNOWN" (v1)
        self.protocol = protocol          # "TCP4" or "TCP6"
        self.remote_ip = remote_ip
        self.remote_port = remote_port
        self.local_ip = local_ip
        self.local_port = local_port
        self.tlvs = tlvs or {}

    @property
    def has_address(self) -> bool:
        return self.command == "PROXY" and bool(self.remote_ip)

    def tls_facts(self) -> dict[str, str] | None:
        """TLS terminated by the balancer (v2 PP2_TYPE_SSL with the client bit), else None."""
        value = self.tlvs.get(PP2_TYPE_SSL)
        if value is None or len(value) < 5 or not value[0] & PP2_CLIENT_SSL:
            return None
        facts = {"verify": str(int.from_bytes(value[1:5], "big"))}
        names = {PP2_SUBTYPE_SSL_VERSION: "version", PP2_SUBTYPE_SSL_CIPHER: "cipher",
                 PP2_SUBTYPE_SSL_CN: "client_cn"}
        for kind, data in parse_tlvs(value[5:]).items():
            if kind in names:
                facts[names[kind]] = printable(data)
        return facts


def printable(data: bytes) -> str:
    """TLV text for notes and logs: no control characters (no CR/LF into headers or logs)."""
    text = data.decode("utf-8", "replace")
    return "".join(char if char.isprintable() else "?" for char in text)[:255]


# -- parsing ------------------------------------------------------------------
def parse_v1(line: bytes) -> ProxyHeader:
    """`PROXY TCP4 src dst sport dport` (without CRLF) or `PROXY UNKNOWN ...`."""
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise ProxyError("v1 header is not ASCII") from None
    words = text.split(" ")
    if len(words) < 2 or words[0] != "PROXY":
        raise ProxyError("not a v1 header")
    if words[1] == "UNKNOWN":
        return ProxyHeader(1, "UNKNOWN")
    if words[1] not in ("TCP4", "TCP6") or len(words) != 6:
        raise ProxyError(f"v1 header with bad protocol or field count: {printable(line[:60])}")
    protocol, source, destination, source_port, destination_port = words[1:]
    version = 4 if protocol == "TCP4" else 6
    return ProxyHeader(1, "PROXY", protocol, _ip(source, version), _port(source_port),
                       _ip(destination, version), _port(destination_port))


def _ip(text: str, version: int) -> str:
    import ipaddress

    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyError(f"bad address in header: {printable(text.encode()[:45])}") from None
    if address.version != version:
        raise ProxyError(f"address {address} is not IPv{version}")
    return str(address)


def _port(text: str) -> str:
    if not (text.isascii() and text.isdigit()) or len(text) > 5 or int(text) > 65535 or (
            len(text) > 1 and text[0] == "0"):
        raise ProxyError(f"bad port in header: {printable(text.encode()[:10])}")
    return str(int(text))


def parse_v2(data: bytes) -> ProxyHeader:
    """A whole v2 header (signature, 4 bytes, address block and TLVs)."""
    import ipaddress

    if len(data) < 16 or not data.startswith(V2_SIGNATURE):
        raise ProxyError("not a v2 header")
    version_command, family, length = data[12], data[13], int.from_bytes(data[14:16], "big")
    if version_command >> 4 != 2:
        raise ProxyError(f"v2 header with version {version_command >> 4}")
    command = version_command & 0x0F
    if command not in (0, 1):
        raise ProxyError(f"v2 header with command {command}")
    body = data[16:16 + length]
    if len(body) != length:
        raise ProxyError("v2 header truncated")
    if command == 0:
        return ProxyHeader(2, "LOCAL", tlvs=_safe_tlvs(body, family))
    if family == 0x11:
        size, protocol = 12, "TCP4"
    elif family == 0x21:
        size, protocol = 36, "TCP6"
    elif family == 0x00:
        return ProxyHeader(2, "UNKNOWN")
    else:
        raise ProxyError(f"v2 header for a family/transport this server does not take (0x{family:02x})")
    if length < size:
        raise ProxyError("v2 address block too short")
    half = (size - 4) // 2
    source = str(ipaddress.ip_address(body[:half]))
    destination = str(ipaddress.ip_address(body[half:2 * half]))
    ports = body[2 * half:size]
    return ProxyHeader(2, "PROXY", protocol, source, str(int.from_bytes(ports[:2], "big")),
                       destination, str(int.from_bytes(ports[2:4], "big")), parse_tlvs(body[size:], strict=True))


def _safe_tlvs(body: bytes, family: int) -> dict[int, bytes]:
    size = {0x11: 12, 0x21: 36, 0x31: 216}.get(family, 0)
    try:
        return parse_tlvs(body[size:], strict=True)
    except ProxyError:
        return {}


def parse_tlvs(data: bytes, strict: bool = False) -> dict[int, bytes]:
    """Type-length-value records; a record running past the end is an error when `strict`."""
    found: dict[int, bytes] = {}
    offset = 0
    while offset + 3 <= len(data):
        kind, size = data[offset], int.from_bytes(data[offset + 1:offset + 3], "big")
        value = data[offset + 3:offset + 3 + size]
        if len(value) != size:
            if strict:
                raise ProxyError("v2 TLV runs past the header")
            break
        found.setdefault(kind, value)
        offset += 3 + size
    if strict and offset != len(data) and any(data[offset:]):
        raise ProxyError("v2 header ends inside a TLV")
    return found


# -- reading --------------------------------------------------------------------
def read_header(io: SmtpIO, timeout: float) -> ProxyHeader:
    """Read one PROXY header from the start of the input; what follows stays buffered."""
    import time

    deadline = time.monotonic() + timeout
    buffer = io.buffer
    while True:
        if len(buffer) >= len(V2_SIGNATURE) and buffer.startswith(V2_SIGNATURE):
            if len(buffer) >= 16:
                total = 16 + int.from_bytes(buffer[14:16], "big")
                if len(buffer) >= total:
                    data = bytes(buffer[:total])
                    del buffer[:total]
                    return parse_v2(data)
        elif buffer[:len(V1_PREFIX)] == V1_PREFIX[:len(buffer)] and len(buffer) >= len(V1_PREFIX):
            end = buffer.find(b"\r\n")
            if 0 <= end <= V1_MAX - 2:
                line = bytes(buffer[:end])
                del buffer[:end + 2]
                return parse_v1(line)
            if end > V1_MAX - 2 or len(buffer) > V1_MAX:
                raise ProxyError("v1 header longer than 107 octets")
        elif not (V2_SIGNATURE.startswith(bytes(buffer)) or V1_PREFIX.startswith(bytes(buffer))):
            raise ProxyError(f"no PROXY header: connection starts with {printable(bytes(buffer[:20]))!r}")
        left = deadline - time.monotonic()
        if left <= 0:
            raise ProxyError(f"no complete PROXY header within {timeout:g} s")
        try:
            if not io._fill(timeout=left):
                raise ProxyError("connection closed before a complete PROXY header")
        except Timeout:
            raise ProxyError(f"no complete PROXY header within {timeout:g} s") from None


# -- policy -----------------------------------------------------------------------
def trusted_networks(smtp: SMTP) -> list[str]:
    """The networks allowed to send a PROXY header (empty: the protocol is off)."""
    lines = [line.split("#", 1)[0].strip() for line in smtp.config("proxy_trusted") or []]
    lines = [line for line in lines if line]
    if not lines and getattr(smtp, "proxy_protocol_plugin", False):
        return list(STUNNEL_TRUSTED)
    return lines


def is_trusted(ip: str, networks: list[str], smtp: SMTP | None = None) -> bool:
    """True when `ip` is in one of `networks`; a line that is no network is logged and skipped."""
    import ipaddress

    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped:
        address = address.ipv4_mapped
    for network in networks:
        try:
            if address in ipaddress.ip_network(network, strict=False):
                return True
        except ValueError:
            if smtp is not None:
                smtp.log(LOGWARN, f"proxy_trusted: {printable(network.encode()[:60])!r} is not an address "
                                  "or network; ignored")
            continue
    return False


def handle_proxy(smtp: SMTP) -> bool:
    """Before the greeting: read and apply the header when the peer is a trusted balancer.

    False when the connection must end (log line written, nothing sent).
    """
    networks = trusted_networks(smtp)
    if not networks:
        return True
    smtp.commands.add("proxy")  # a PROXY command after the greeting is refused, not "unrecognized"
    balancer = smtp.connection.remote_ip
    if not is_trusted(balancer, networks, smtp):
        return True
    timeout = float(smtp.config_int("proxy_timeout", int(DEFAULT_TIMEOUT)) or DEFAULT_TIMEOUT)
    try:
        header = read_header(smtp.io, timeout)
    except ProxyError as error:
        smtp.varlog(LOGNOTICE, "connect", "proxy", f"reject {balancer}: {error}; connection closed")
        return False
    apply_header(smtp, header, balancer)
    return True


def apply_header(smtp: SMTP, header: ProxyHeader, balancer: str) -> None:
    """The client's facts replace the balancer's in the connection and the environment."""
    connection, notes = smtp.connection, smtp.connection.notes
    notes["proxy_version"] = header.version
    notes["proxy_balancer_ip"] = balancer
    if header.tlvs.get(PP2_TYPE_AUTHORITY):
        notes["proxy_authority"] = printable(header.tlvs[PP2_TYPE_AUTHORITY])
    if not header.has_address:
        smtp.varlog(LOGINFO, "connect", "proxy", f"{header.command} header from {balancer}: balancer address kept")
        return
    ip = header.remote_ip
    # local_ip/local_port stay this socket's: the port the balancer reached (465 at an
    # stunnel that terminated TLS) must not make the tls plugin start SMTPS on plain text
    connection.start(remote_ip=ip, remote_port=header.remote_port, remote_host=f"[{ip}]",
                     remote_info=f"[{ip}]")
    notes["proxy"] = "YES"
    notes["protocol"] = header.protocol
    notes["remote_ip"] = ip
    notes["remote_port"] = header.remote_port
    notes["local_ip"] = header.local_ip
    notes["local_port"] = header.local_port
    for name in BALANCER_ENV:
        os.environ.pop(name, None)
    os.environ.update(TCPREMOTEIP=ip, TCPREMOTEPORT=header.remote_port)
    tls = header.tls_facts()
    tls_text = ""
    if tls is not None:
        notes["tls_enabled"] = 1
        for key in ("version", "cipher"):
            if tls.get(key):
                notes["tls_" + key] = tls[key]
        if tls.get("client_cn"):
            notes["tls_client_cn"] = tls["client_cn"]
        tls_text = f", TLS {tls.get('version', '?')} {tls.get('cipher', '?')} at the balancer"
    smtp.varlog(LOGINFO, "connect", "proxy",
                f"v{header.version} from {balancer}: client {ip}:{header.remote_port} "
                f"to {header.local_ip}:{header.local_port}{tls_text}")


def refuse_command(smtp: SMTP) -> None:
    """`PROXY` as a command (after the greeting, or from an untrusted address): refuse, disconnect."""
    smtp.varlog(LOGNOTICE, "unrecognized_command", "proxy",
                f"reject {smtp.connection.remote_ip}: 554 PROXY header from a client that is not "
                "a trusted balancer, or after the greeting")
    smtp.respond(554, "PROXY not accepted from you", esc="5.7.1")
    smtp.disconnect()
