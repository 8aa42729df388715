"""The one DNS resolver layer every DNS-based plugin uses.

    from qpsmtpd import dns
    lookup = dns.for_hook(self)                     # shares one time budget
    mx, a = lookup.many([("example.test", "MX"), ("example.test", "A")])
    if mx.temporary: return DENYSOFT, "DNS trouble, try again later"

* dnspython is imported on the first lookup, not before, and only
  `dns.name` (with a stand-in for `dns._features`): names go to and come
  from the wire through dnspython (compression pointers, label rules,
  escaping); the fixed-layout message header and the A, AAAA, MX, TXT,
  PTR, CNAME and NS records around them are qpsmtpd.dnswire's.  Not
  `dns.resolver`, not `dns.message`; docs/dns.md says why and what it saves.
* Nameservers: `config/dns_servers` (one `address[:port]` per line,
  `[v6addr]:port` for IPv6), else the `nameserver` lines of
  `/etc/resolv.conf`.  Search domains are never applied: every name is
  absolute.
* `config/dns_timeout` (seconds, default 5, qpsmtpd's default) bounds one
  query, retransmissions to every server included.  Each hook gets a
  budget (`config/dns_budget`, default twice the timeout) that bounds all
  of its lookups together.
* `many()` sends every query at once over UDP (one socket each, random
  source port) and collects the answers; truncated answers are retried
  over TCP.
* Answers (good and bad) are cached for the session.
* SERVFAIL, REFUSED, timeouts, network errors and an exhausted budget are
  `temporary`; NXDOMAIN and "no records of that type" are not.
"""

from __future__ import annotations

import time

from qpsmtpd import dnswire

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any, Iterable

OK = "ok"
NXDOMAIN = "nxdomain"
NODATA = "nodata"
TEMP = "temp"
INVALID = "invalid"

DEFAULT_TIMEOUT = 5.0
EDNS_PAYLOAD = 1232
RESOLV_CONF = "/etc/resolv.conf"
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")

_dns: Any = None


def load_dnspython() -> Any:
    """Import the part of dnspython we use, `dns.name`, the cheapest way
    (see docs/dns.md); returns the `dns` package."""
    global _dns
    if _dns is not None:
        return _dns
    import sys
    import types
    import dns
    if "dns._features" not in sys.modules:
        # dns._features answers "is this optional package installed?" through
        # importlib.metadata (about 11 ms). We need none of those packages.
        features = types.ModuleType("dns._features")
        cache: dict[str, bool] = {}
        features.have = lambda feature: cache.get(feature, False)  # type: ignore[attr-defined]
        features.force = cache.__setitem__  # type: ignore[attr-defined]
        sys.modules["dns._features"] = features
        dns._features = features  # type: ignore[attr-defined]
    import dns.name
    _dns = dns
    return dns


def import_with_stand_ins(module: str, stand_ins: dict[str, dict[str, Any]]) -> Any:
    """Import `module` while the modules named in `stand_ins` are empty stand-ins
    (with the given attributes), then take the stand-ins away again.

    For libraries that import something heavy at their top level which we
    never use through them (pyspf and dkimpy import `dns.resolver`, pyspf
    `email.message`); a later real import of those modules still works.
    """
    import importlib
    import sys
    import types

    placed: dict[str, types.ModuleType] = {}
    for name, attributes in stand_ins.items():
        if name in sys.modules:
            continue
        parent, _dot, child = name.rpartition(".")
        stand_in = types.ModuleType(name)
        stand_in.__dict__.update(attributes)
        if parent:
            # `import a.b` finds a.b in sys.modules, but code then reads a.b as
            # an attribute of a, which only a real import would have set
            setattr(importlib.import_module(parent), child, stand_in)
        sys.modules[name] = placed[name] = stand_in
    try:
        return importlib.import_module(module)
    finally:
        for name, stand_in in placed.items():
            if sys.modules.get(name) is stand_in:
                del sys.modules[name]
            parent, _dot, child = name.rpartition(".")
            parent_module = sys.modules.get(parent)
            if parent_module is not None and getattr(parent_module, child, None) is stand_in:
                delattr(parent_module, child)


class Result:
    """The outcome of one lookup.  `answers` holds text: addresses, names
    (no trailing dot), TXT strings joined; MX answers are `(preference, host)`;
    `raw_txt` the character-strings of each TXT record."""

    __slots__ = ("name", "rdtype", "status", "answers", "error", "raw_txt")

    def __init__(self, name: str, rdtype: str, status: str, answers: list[Any] | None = None,
                 error: str = "", raw_txt: list[list[bytes]] | None = None) -> None:
        self.name = name
        self.rdtype = rdtype
        self.status = status
        self.answers = answers if answers is not None else []
        self.error = error
        self.raw_txt = raw_txt if raw_txt is not None else []

    def __repr__(self) -> str:
        return (f"Result({self.name!r}, {self.rdtype!r}, {self.status!r}, answers={self.answers!r}"
                f"{f', error={self.error!r}' if self.error else ''})")

    @property
    def temporary(self) -> bool:
        return self.status == TEMP

    @property
    def found(self) -> bool:
        return self.status == OK and bool(self.answers)

    @property
    def nxdomain(self) -> bool:
        return self.status == NXDOMAIN

    def __bool__(self) -> bool:
        return self.found


# -- addresses --------------------------------------------------------------

def parse_server(line: str) -> tuple[str, int] | None:
    """`1.2.3.4`, `1.2.3.4:53`, `::1`, `[::1]:5353` -> (address, port)."""
    import ipaddress
    text = line.split()[0] if line.split() else ""
    port = 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            if not rest[1:].isdigit():
                return None
            port = int(rest[1:])
        elif rest:
            return None
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        if not port_text.isdigit():
            return None
        port = int(port_text)
    else:
        host = text
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return None
    if not 0 < port < 65536:
        return None
    return str(address), port


def system_servers(path: str = RESOLV_CONF) -> list[tuple[str, int]]:
    """The `nameserver` lines of resolv.conf (search/domain lines ignored)."""
    servers = []
    try:
        with open(path) as handle:
            for line in handle:
                words = line.split()
                if len(words) >= 2 and words[0] == "nameserver":
                    server = parse_server(words[1])
                    if server:
                        servers.append(server)
    except OSError:
        pass
    return servers or [("127.0.0.1", 53)]


def reverse_ip(ip: str) -> str | None:
    """`192.0.2.1` -> `1.2.0.192`; IPv6 -> its 32 nibbles reversed; None if not an IP."""
    name = ptr_name(ip)
    return name.rsplit(".", 2)[0] if name else None


def ptr_name(ip: str) -> str | None:
    """The in-addr.arpa / ip6.arpa name of an address."""
    import ipaddress
    try:
        address = ipaddress.ip_address(ip.strip("[]").removeprefix("IPv6:"))
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.reverse_pointer


def valid_name(name: str) -> bool:
    """A name we are willing to send: ASCII letters, digits, `-_.`, sane labels."""
    name = name.rstrip(".")
    if not name or len(name) > 253 or not set(name) <= _NAME_CHARS:
        return False
    return all(0 < len(label) < 64 for label in name.split("."))


# -- the resolver ------------------------------------------------------------

class _Pending:
    __slots__ = ("key", "wire", "query_id", "type_code", "sock", "attempt", "next_send", "server", "error")

    def __init__(self, key: tuple[str, str], type_code: int) -> None:
        self.key = key
        self.type_code = type_code
        self.query_id = dnswire.new_query_id()
        self.wire = dnswire.make_query(_dns, self.query_id, key[0], type_code, EDNS_PAYLOAD)
        self.sock: Any = None
        self.attempt = 0
        self.next_send = 0.0
        self.server: tuple[str, int] = ("", 0)
        self.error = "timeout"

    def answer_in(self, wire: bytes) -> dnswire.Answer | None:
        """The answer to this query in `wire`, or None for a datagram that is
        malformed or answers something else (never believed, keep waiting)."""
        try:
            return dnswire.parse_answer(_dns, wire, self.query_id, self.key[0], self.type_code)
        except dnswire.MalformedAnswer:
            return None

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def failed(self, error: object) -> None:
        self.error = f"{self.server[0]}:{self.server[1]}: {error}"
        self.close()
        self.next_send = 0.0


class Resolver:
    """Concurrent stub resolver with a session cache."""

    def __init__(self, servers: list[tuple[str, int]] | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.servers = servers or system_servers()
        self.timeout = timeout
        self.cache: dict[tuple[str, str], Result] = {}
        self.queries_sent = 0

    def lookup(self, name: str, rdtype: str = "A", deadline: float | None = None) -> Result:
        return self.many([(name, rdtype)], deadline)[0]

    def many(self, queries: Iterable[tuple[str, str]], deadline: float | None = None) -> list[Result]:
        """Resolve all `(name, type)` pairs concurrently; results in the same order."""
        keys = [(name.rstrip(".").lower(), rdtype.upper()) for name, rdtype in queries]
        todo = []
        for key in dict.fromkeys(keys):
            if key in self.cache:
                continue
            if not valid_name(key[0]):
                self.cache[key] = Result(key[0], key[1], INVALID, error="invalid name")
            else:
                todo.append(key)
        if todo:
            self._resolve(todo, deadline)
        return [self.cache[key] for key in keys]

    # -- internals -------------------------------------------------------------
    def _resolve(self, keys: list[tuple[str, str]], deadline: float | None) -> None:
        load_dnspython()
        now = time.monotonic()
        end = now + self.timeout if deadline is None else min(deadline, now + self.timeout)
        items = []
        for key in keys:
            type_code = dnswire.TYPE_CODES.get(key[1])
            if type_code is None:
                self.cache[key] = Result(key[0], key[1], INVALID, error=f"unsupported record type {key[1]}")
            else:
                items.append(_Pending(key, type_code))
        try:
            self._run(items, end)
        finally:
            for item in items:
                item.close()

    def _run(self, items: list[_Pending], end: float) -> None:
        import select
        attempts = max(2, len(self.servers))
        interval = max(0.0, end - time.monotonic()) / attempts
        active = list(items)
        while active:
            now = time.monotonic()
            for item in active:
                if now >= end:
                    self._finish(item, Result(*item.key, TEMP, error=item.error))
                elif item.next_send <= now:
                    if item.attempt < attempts:
                        self._send(item, now + interval)
                    elif item.sock is None:
                        self._finish(item, Result(*item.key, TEMP, error=item.error))
            active = [item for item in active if item.key not in self.cache]
            waiting = {item.sock.fileno(): item for item in active if item.sock is not None}
            if not waiting:
                continue
            poller = select.poll()
            for fd in waiting:
                poller.register(fd, select.POLLIN | select.POLLERR)
            wake = min([end] + [item.next_send for item in active if item.attempt < attempts])
            for fd, _event in poller.poll(max(0.0, wake - time.monotonic()) * 1000 + 1):
                self._receive(waiting[fd], attempts)
            active = [item for item in active if item.key not in self.cache]

    def _finish(self, item: _Pending, result: Result) -> None:
        self.cache[item.key] = result
        item.close()

    def _send(self, item: _Pending, next_send: float) -> None:
        import socket
        item.close()
        item.server = self.servers[item.attempt % len(self.servers)]
        item.attempt += 1
        item.next_send = next_send
        family = socket.AF_INET6 if ":" in item.server[0] else socket.AF_INET
        try:
            item.sock = socket.socket(family, socket.SOCK_DGRAM)
            item.sock.setblocking(False)
            item.sock.connect(item.server)
            item.sock.send(item.wire)
            self.queries_sent += 1
        except OSError as error:
            item.failed(error.strerror or error)

    def _receive(self, item: _Pending, attempts: int) -> None:
        try:
            wire = item.sock.recv(65535)
        except BlockingIOError:
            return
        except OSError as error:
            item.failed(error.strerror or error)
            return
        answer = item.answer_in(wire)
        if answer is None:
            return
        if answer.truncated:
            answer = self._tcp(item)
            if answer is None:
                return
        if answer.rcode == dnswire.NXDOMAIN:
            self._finish(item, Result(*item.key, NXDOMAIN))
        elif answer.rcode == dnswire.NOERROR:
            self._finish(item, _result_from(*item.key, answer))
        else:
            item.failed(dnswire.rcode_text(answer.rcode))
            if item.attempt >= min(attempts, len(self.servers)):
                self._finish(item, Result(*item.key, TEMP, error=item.error))

    def _tcp(self, item: _Pending) -> dnswire.Answer | None:
        import socket
        import struct
        try:
            with socket.create_connection(item.server, timeout=min(self.timeout, 5)) as sock:
                sock.sendall(struct.pack("!H", len(item.wire)) + item.wire)
                size = struct.unpack("!H", _recv_exact(sock, 2))[0]
                wire = _recv_exact(sock, size)
        except OSError as error:
            item.failed(error)
            return None
        answer = item.answer_in(wire)
        if answer is None or answer.truncated:
            item.failed("malformed or mismatched TCP answer")
            return None
        return answer


def _recv_exact(sock: Any, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return data


def _result_from(name: str, rdtype: str, answer: dnswire.Answer) -> Result:
    result = Result(name, rdtype, OK)
    for rdata in answer.records:
        if rdtype == "TXT":
            result.raw_txt.append(rdata)
            result.answers.append(b"".join(rdata).decode("utf-8", "replace"))
        else:
            result.answers.append(rdata)
    if not result.answers:
        result.status = NODATA
    return result


# -- per session / per hook -------------------------------------------------------

class HookLookup:
    """The resolver seen by one hook run: every lookup shares one deadline."""

    def __init__(self, resolver: Resolver, budget: float) -> None:
        self.resolver = resolver
        self.deadline = time.monotonic() + budget

    def lookup(self, name: str, rdtype: str = "A") -> Result:
        return self.resolver.lookup(name, rdtype, self.deadline)

    def many(self, queries: Iterable[tuple[str, str]]) -> list[Result]:
        return self.resolver.many(queries, self.deadline)

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())


def _float_config(qp: Any, name: str, default: float) -> float:
    try:
        value = float(qp.config_value(name, default))
    except (TypeError, ValueError):
        return default
    return value if value > 0 else default


def session_resolver(qp: Any) -> Resolver:
    """The session's resolver (made from config on first use, then reused)."""
    resolver = getattr(qp, "_dns_resolver", None)
    if resolver is None:
        servers = [server for server in (parse_server(line) for line in qp.config("dns_servers")) if server]
        resolver = Resolver(servers or None, _float_config(qp, "dns_timeout", DEFAULT_TIMEOUT))
        qp._dns_resolver = resolver
    return resolver


def positive_float(text: Any) -> float | None:
    """`text` as a number of seconds, or None unless it is a positive number."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


def for_hook(plugin: Any, budget: float | None = None, default: float | None = None) -> HookLookup:
    """A lookup object for one hook run of `plugin` (or a `qp`), with its time budget:
    `budget` if given, else the plugin's `timeout` argument, else `default`, else
    `config/dns_budget` (default twice `config/dns_timeout`)."""
    qp = getattr(plugin, "qp", plugin)
    resolver = session_resolver(qp)
    if budget is None or budget <= 0:
        budget = positive_float(getattr(plugin, "opts", {}).get("timeout")) or default
    if budget is None:
        budget = _float_config(qp, "dns_budget", 2 * resolver.timeout)
    return HookLookup(resolver, budget)


def is_ip(text: str) -> bool:
    import ipaddress
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


