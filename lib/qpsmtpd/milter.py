"""The MTA side of the sendmail milter protocol, version 6.

`MilterClient` speaks to one milter over TCP or a unix socket: option
negotiation, macros, one method per step (connect, helo, mail, rcpt, data,
header, eoh, body, eom, abort, quit), and the milter's answer to each step
as a `Verdict`.  At end of message the milter's modifications come back as
`Modification` objects in the order it sent them; a replaced body is
spooled to a file by the caller's `body_sink`, never held whole.

Every read and write has a time-out (the `Timeouts` of the step); a milter
that is down, too slow, closes the connection or sends anything that is not
the protocol raises `MilterError`.  The plugin `plugins/milter.py` decides
what the client then gets (its `default_action`).

Wire format: every packet is a 4-byte big-endian length (command byte
included), one command byte, and the data; strings end in NUL.
"""

from __future__ import annotations

import _socket as socket  # the C module: socket.py would import enum and selectors (~5 ms)
import struct
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

VERSION = 6
MAX_PACKET = 1 << 20          # nothing a milter sends is bigger (body replacement comes in chunks)
BODY_CHUNK = 65535            # MILTER_CHUNK_SIZE: the largest body packet a milter accepts

# Actions the milter may take at end of message (SMFIF_*).
ADDHDRS, CHGBODY, ADDRCPT, DELRCPT, CHGHDRS, QUARANTINE, CHGFROM, ADDRCPT_PAR, SETSYMLIST = (
    0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x100)
ALL_ACTIONS = 0x1FF

# Protocol steps the milter may leave out (SMFIP_NO*) or not reply to (SMFIP_NR_*).
NOCONNECT, NOHELO, NOMAIL, NORCPT, NOBODY, NOHDRS, NOEOH, NR_HDR = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40, 0x80
NOUNKNOWN, NODATA, SKIP, RCPT_REJ = 0x100, 0x200, 0x400, 0x800
NR_CONN, NR_HELO, NR_MAIL, NR_RCPT, NR_DATA, NR_UNKN, NR_EOH, NR_BODY = (
    0x1000, 0x2000, 0x4000, 0x8000, 0x10000, 0x20000, 0x40000, 0x80000)
HDR_LEADSPC = 0x100000
# Everything above except RCPT_REJ: rejected recipients are never shown to a milter.
OFFERED_PROTOCOL = 0x1FFFFF & ~RCPT_REJ

# Macro stages of a SETSYMLIST request (SMFIM_*) and the command each belongs to.
STAGE_COMMANDS = {0: b"C", 1: b"H", 2: b"M", 3: b"R", 4: b"T", 5: b"E", 6: b"N"}

# step -> (command byte, "leave it out" flag, "no reply" flag)
STEPS = {
    "connect": (b"C", NOCONNECT, NR_CONN),
    "helo": (b"H", NOHELO, NR_HELO),
    "mail": (b"M", NOMAIL, NR_MAIL),
    "rcpt": (b"R", NORCPT, NR_RCPT),
    "data": (b"T", NODATA, NR_DATA),
    "header": (b"L", NOHDRS, NR_HDR),
    "eoh": (b"N", NOEOH, NR_EOH),
    "body": (b"B", NOBODY, NR_BODY),
    "eom": (b"E", 0, 0),
}

# Replies that end a step (SMFIR_*).
FINAL_REPLIES = {b"a": "accept", b"c": "continue", b"d": "discard", b"r": "reject",
                 b"t": "tempfail", b"y": "replycode", b"s": "skip"}
PROGRESS = b"p"
# Modifications at end of message (SMFIR_*).
MODIFICATIONS = {b"h": "add_header", b"i": "insert_header", b"m": "change_header", b"e": "change_from",
                 b"+": "add_rcpt", b"2": "add_rcpt", b"-": "delete_rcpt", b"b": "replace_body",
                 b"q": "quarantine"}
MODIFICATION_ACTION = {"add_header": ADDHDRS, "insert_header": ADDHDRS, "change_header": CHGHDRS,
                       "change_from": CHGFROM, "add_rcpt": ADDRCPT | ADDRCPT_PAR, "delete_rcpt": DELRCPT,
                       "replace_body": CHGBODY, "quarantine": QUARANTINE}


class MilterError(Exception):
    """The milter cannot be used: down, too slow, connection lost, or not speaking the protocol."""


class Timeouts:
    """Seconds allowed for connecting, for each envelope/header step, for each body chunk and for end of message."""

    __slots__ = ("body", "command", "connect", "eom")

    def __init__(self, connect: float = 5.0, command: float = 10.0, body: float = 20.0, eom: float = 20.0) -> None:
        self.connect = connect
        self.command = command
        self.body = body
        self.eom = eom


class Verdict:
    """A milter's answer to one step.

    `action`: continue, accept, reject, tempfail, discard, replycode or skip
    (replycode carries `code`, `esc` and `lines`: the milter's own SMTP reply).
    """

    __slots__ = ("action", "code", "esc", "lines")

    def __init__(self, action: str, code: int = 0, esc: str | None = None, lines: list[str] | None = None) -> None:
        self.action = action
        self.code = code
        self.esc = esc
        self.lines = lines or []

    def __repr__(self) -> str:
        if self.action == "replycode":
            return f"Verdict(replycode {self.code} {self.esc or ''} {self.lines!r})"
        return f"Verdict({self.action})"


CONTINUE = Verdict("continue")


class Modification:
    """One change asked for at end of message.

    kind: add_header (name, value), insert_header (index, name, value),
    change_header (index, name, value; an empty value deletes), change_from
    (address, args), add_rcpt (address, args), delete_rcpt (address),
    quarantine (reason).  A replaced body is not listed here: it went to the
    body sink, and `EndOfMessage.body_replaced` says so.
    """

    __slots__ = ("address", "args", "index", "kind", "name", "reason", "value")

    def __init__(self, kind: str, *, name: str = "", value: str = "", index: int = 0, address: str = "",
                 args: list[str] | None = None, reason: str = "") -> None:
        self.kind = kind
        self.name = name
        self.value = value
        self.index = index
        self.address = address
        self.args = args or []
        self.reason = reason

    def __repr__(self) -> str:
        fields = {key: getattr(self, key) for key in self.__slots__[1:] if getattr(self, key)}
        return f"Modification({self.kind}, {fields})"


class EndOfMessage:
    """What the milter said at end of message: its verdict and the changes it asked for."""

    __slots__ = ("body_replaced", "modifications", "refused", "verdict")

    def __init__(self) -> None:
        self.verdict = CONTINUE
        self.modifications: list[Modification] = []
        self.body_replaced = False
        self.refused: list[str] = []  # modifications it had not negotiated (ignored)


def parse_address(address: str) -> tuple[int, object]:
    """`[host:]port`, `inet:port@host`, `inet6:port@host`, `unix:/path`, `local:/path` or `/path`."""
    text = address.strip()
    for prefix in ("unix:", "local:"):
        if text.startswith(prefix):
            return socket.AF_UNIX, text[len(prefix):]
    if text.startswith("/"):
        return socket.AF_UNIX, text
    family = socket.AF_INET
    for prefix, prefix_family in (("inet6:", socket.AF_INET6), ("inet:", socket.AF_INET)):
        if text.startswith(prefix):
            port, _at, host = text[len(prefix):].partition("@")
            return prefix_family, (host or "127.0.0.1", _port(port, address))
    host, colon, port = text.rpartition(":")
    if not colon:
        host, port = "127.0.0.1", text
    if host.startswith("[") and host.endswith("]"):
        host, family = host[1:-1], socket.AF_INET6
    return family, (host or "127.0.0.1", _port(port, address))


def _port(text: str, address: str) -> int:
    if not (text.isascii() and text.isdigit() and 0 < int(text) < 65536):
        raise ValueError(f"not a milter address: {address!r} (want [host:]port, inet:port@host or unix:/path)")
    return int(text)


def _cstrings(data: bytes) -> list[str]:
    """The NUL-terminated strings of a packet's data."""
    if data.endswith(b"\0"):
        data = data[:-1]
    return [part.decode("utf-8", "surrogateescape") for part in data.split(b"\0")] if data else []


def _nul(*texts: str) -> bytes:
    return b"".join(text.encode("utf-8", "surrogateescape") + b"\0" for text in texts)


def parse_replycode(text: str) -> Verdict:
    """`550 5.7.1 Go away` or a multi-line `550-5.7.1 a\\r\\n550 5.7.1 b` as a replycode Verdict."""
    lines = [_printable(line) for line in text.replace("\r\n", "\n").split("\n") if line]
    if not lines or len(lines[0]) < 3 or not lines[0][:3].isdigit() or lines[0][0] not in "45":
        raise MilterError(f"bad reply code from milter: {text[:80]!r}")
    code = int(lines[0][:3])
    esc = None
    texts = []
    for line in lines:
        rest = line[4:] if line[:3] == lines[0][:3] and line[3:4] in (" ", "-", "") else line
        word, _space, after = rest.partition(" ")
        parts = word.split(".")
        if len(parts) == 3 and all(part.isdigit() for part in parts) and parts[0] == str(code // 100):
            esc = esc or word
            rest = after
        texts.append(rest)
    return Verdict("replycode", code, esc, texts)


class MilterClient:
    """One connection to one milter (one SMTP session)."""

    def __init__(self, address: str, timeouts: Timeouts | None = None) -> None:
        self.family, self.target = parse_address(address)
        self.address = address
        self.timeouts = timeouts or Timeouts()
        self.sock: socket.socket | None = None
        self.actions = 0            # what the milter may change (negotiated)
        self.protocol = 0           # steps it leaves out / does not answer (negotiated)
        self.symlists: dict[bytes, set[str]] = {}  # command -> macro names the milter asked for
        self._buffer = b""
        self._pending = b""
        self._quickack = self.family != socket.AF_UNIX and hasattr(socket, "TCP_QUICKACK")

    # -- connection ---------------------------------------------------------
    def open(self) -> None:
        """Connect and negotiate; raises MilterError."""
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeouts.connect)
            sock.connect(self.target)
            if self.family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as error:
            sock.close()
            raise MilterError(f"cannot connect to {self.address}: {error}") from None
        self.sock = sock
        try:
            self._negotiate()
        except BaseException:
            self.close()
            raise

    def _negotiate(self) -> None:
        deadline = time.monotonic() + self.timeouts.connect
        self._send(b"O", struct.pack("!III", VERSION, ALL_ACTIONS, OFFERED_PROTOCOL), deadline)
        command, data = self._read(deadline)
        if command != b"O" or len(data) < 12:
            raise MilterError(f"bad option negotiation reply (command {command!r}, {len(data)} bytes)")
        version, actions, protocol = struct.unpack("!III", data[:12])
        if version < 2:
            raise MilterError(f"milter protocol version {version} is too old")
        self.actions = actions & ALL_ACTIONS
        self.protocol = protocol & OFFERED_PROTOCOL
        self.symlists = self._symlists(data[12:])

    @staticmethod
    def _symlists(data: bytes) -> dict[bytes, set[str]]:
        """The macro lists a milter may append to its negotiation reply (SMFIF_SETSYMLIST)."""
        lists: dict[bytes, set[str]] = {}
        while len(data) >= 5:
            stage = struct.unpack("!I", data[:4])[0]
            end = data.find(b"\0", 4)
            end = len(data) if end < 0 else end
            names = data[4:end].decode("ascii", "replace").split()
            if stage in STAGE_COMMANDS:
                lists[STAGE_COMMANDS[stage]] = {name.strip("{}") for name in names}
            data = data[end + 1:]
        return lists

    @property
    def connected(self) -> bool:
        return self.sock is not None

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
        self._buffer = b""
        self._pending = b""

    # -- wire ------------------------------------------------------------------
    def _send(self, command: bytes, data: bytes, deadline: float) -> None:
        """Send one packet, together with any packet queued before it (one write: no Nagle delay)."""
        if self.sock is None:
            raise MilterError("not connected")
        packet = self._pending + struct.pack("!I", len(data) + 1) + command + data
        self._pending = b""
        try:
            self._settimeout(deadline)
            self.sock.sendall(packet)
        except OSError as error:
            raise MilterError(f"lost connection to {self.address} while sending: {_describe(error)}") from None

    def _settimeout(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise MilterError(f"{self.address} timed out")
        assert self.sock is not None
        self.sock.settimeout(remaining)

    def _recv_exactly(self, size: int, deadline: float) -> bytes:
        assert self.sock is not None
        while len(self._buffer) < size:
            try:
                self._settimeout(deadline)
                if self._quickack:
                    # A milter that answers in several writes (changes, then the verdict) would
                    # otherwise wait for our delayed ACK under Nagle: 40 ms at end of message.
                    self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
                chunk = self.sock.recv(max(65536, size - len(self._buffer)))
            except OSError as error:
                raise MilterError(f"lost connection to {self.address} while reading: {_describe(error)}") from None
            if not chunk:
                raise MilterError(f"{self.address} closed the connection")
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def _read(self, deadline: float) -> tuple[bytes, bytes]:
        """One packet: (command byte, data)."""
        length = struct.unpack("!I", self._recv_exactly(4, deadline))[0]
        if not 1 <= length <= MAX_PACKET:
            raise MilterError(f"protocol garbage from {self.address}: packet length {length}")
        packet = self._recv_exactly(length, deadline)
        return packet[:1], packet[1:]

    def _read_verdict(self, step: str, deadline: float, timeout: float) -> Verdict:
        while True:
            command, data = self._read(deadline)
            if command == PROGRESS:
                deadline = time.monotonic() + timeout
                continue
            action = FINAL_REPLIES.get(command)
            if action is None:
                raise MilterError(f"protocol garbage from {self.address}: reply {command!r} at {step}")
            if action == "skip" and step != "body":
                raise MilterError(f"{self.address} answered skip at {step}")
            if action == "replycode":
                return parse_replycode(data.rstrip(b"\0").decode("utf-8", "replace"))
            return Verdict(action)

    # -- macros and steps ------------------------------------------------------
    def _send_macros(self, command: bytes, macros: dict[str, str] | None, deadline: float) -> None:
        if not macros:
            return
        wanted = self.symlists.get(command)
        pairs = []
        for name, value in macros.items():
            if value is None or (wanted is not None and name.strip("{}") not in wanted):
                continue
            pairs.append(name if len(name) == 1 else "{" + name.strip("{}") + "}")
            pairs.append(str(value))
        if pairs:
            data = command + _nul(*pairs)
            self._pending += struct.pack("!I", len(data) + 1) + b"D" + data  # sent with the step's packet

    def wants(self, step: str) -> bool:
        """False when the milter asked to leave this step out."""
        return not self.protocol & STEPS[step][1]

    def may(self, action_flag: int) -> bool:
        return bool(self.actions & action_flag)

    def step(self, step: str, data: bytes = b"", macros: dict[str, str] | None = None) -> Verdict:
        """Send one step (with its macros) and return the milter's answer (continue when it sends none)."""
        command, leave_out, no_reply = STEPS[step]
        if self.protocol & leave_out:
            return CONTINUE
        timeout = self.timeouts.body if step == "body" else self.timeouts.command
        deadline = time.monotonic() + timeout
        self._send_macros(command, macros, deadline)
        self._send(command, data, deadline)
        if self.protocol & no_reply:
            return CONTINUE
        return self._read_verdict(step, deadline, timeout)

    def connect(self, hostname: str, address: str, port: int, macros: dict[str, str] | None = None) -> Verdict:
        if ":" in address:
            family = b"6"
        elif address:
            family = b"4"
        else:
            return self.step("connect", _nul(hostname) + b"U", macros)
        return self.step("connect", _nul(hostname) + family + struct.pack("!H", port) + _nul(address), macros)

    def helo(self, name: str, macros: dict[str, str] | None = None) -> Verdict:
        return self.step("helo", _nul(name), macros)

    def mail(self, sender: str, args: Iterable[str] = (), macros: dict[str, str] | None = None) -> Verdict:
        return self.step("mail", _nul(sender, *args), macros)

    def rcpt(self, recipient: str, args: Iterable[str] = (), macros: dict[str, str] | None = None) -> Verdict:
        return self.step("rcpt", _nul(recipient, *args), macros)

    def data(self, macros: dict[str, str] | None = None) -> Verdict:
        return self.step("data", b"", macros)

    def header(self, name: str, value: str, macros: dict[str, str] | None = None) -> Verdict:
        return self.step("header", _nul(name, value), macros)

    def eoh(self, macros: dict[str, str] | None = None) -> Verdict:
        return self.step("eoh", b"", macros)

    def body(self, chunk: bytes) -> Verdict:
        """One body chunk (CRLF line ends, at most BODY_CHUNK bytes)."""
        return self.step("body", chunk)

    def eom(self, body_sink: Callable[[bytes], None], macros: dict[str, str] | None = None) -> EndOfMessage:
        """End of message: collect the modifications until the final verdict.

        Chunks of a replaced body (CRLF line ends, as the milter sends them)
        go to `body_sink` as they arrive.
        """
        timeout = self.timeouts.eom
        deadline = time.monotonic() + timeout
        self._send_macros(b"E", macros, deadline)
        self._send(b"E", b"", deadline)
        result = EndOfMessage()
        while True:
            command, data = self._read(deadline)
            if command == PROGRESS:
                deadline = time.monotonic() + timeout
                continue
            kind = MODIFICATIONS.get(command)
            if kind is None:
                action = FINAL_REPLIES.get(command)
                if action is None or action == "skip":
                    raise MilterError(f"protocol garbage from {self.address}: reply {command!r} at end of message")
                result.verdict = (parse_replycode(data.rstrip(b"\0").decode("utf-8", "replace"))
                                  if action == "replycode" else Verdict(action))
                return result
            if not self.actions & MODIFICATION_ACTION[kind]:
                result.refused.append(kind)
                continue
            if kind == "replace_body":
                result.body_replaced = True
                body_sink(data)
                continue
            result.modifications.append(_modification(kind, command, data))

    def abort(self) -> None:
        """End the current message (the milter does not answer)."""
        self._send(b"A", b"", time.monotonic() + self.timeouts.command)

    def quit(self) -> None:
        """End the session politely and close."""
        try:
            if self.sock is not None:
                self._send(b"Q", b"", time.monotonic() + self.timeouts.command)
        except MilterError:
            pass
        finally:
            self.close()


def _modification(kind: str, command: bytes, data: bytes) -> Modification:
    if kind in ("insert_header", "change_header"):
        if len(data) < 4:
            raise MilterError(f"protocol garbage: short {kind} packet")
        index = struct.unpack("!I", data[:4])[0]
        strings = _cstrings(data[4:])
        if not strings:
            raise MilterError(f"protocol garbage: {kind} without a header name")
        return Modification(kind, index=index, name=strings[0], value=strings[1] if len(strings) > 1 else "")
    strings = _cstrings(data)
    if kind == "add_header":
        if not strings:
            raise MilterError("protocol garbage: add_header without a header name")
        return Modification(kind, name=strings[0], value=strings[1] if len(strings) > 1 else "")
    if kind == "quarantine":
        return Modification(kind, reason=strings[0] if strings else "")
    if not strings or not strings[0]:
        raise MilterError(f"protocol garbage: {kind} without an address")
    args = strings[1].split() if len(strings) > 1 else []
    return Modification(kind, address=strings[0], args=args)


def _printable(line: str) -> str:
    """A reply line from the milter with control characters (a bare CR, NUL, ESC ...) made spaces."""
    return line if line.isprintable() else "".join(char if char.isprintable() else " " for char in line)


def _describe(error: OSError) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    return error.strerror or str(error)
