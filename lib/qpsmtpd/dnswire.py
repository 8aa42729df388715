"""DNS messages on the wire for the stub resolver in qpsmtpd.dns.

Names are encoded and decoded by dnspython's `dns.name` (label rules,
compression pointers and their loops, escaping in text); this module adds
only what has a fixed layout around them (RFC 1035 4.1, RFC 6891 6.1.2):
the 12-byte header, one question, an EDNS0 OPT record, and the rdata of
the types the plugins ask for.  That keeps a lookup off `dns.message`,
whose import (with `dns.edns`, `dns.entropy`/`hashlib`, `dns.tsig`,
`dns.renderer`, `dns.rdataset`, the rdata classes) costs more than the
rest of a DNS session; see docs/dns.md.

Anything malformed raises `MalformedAnswer`; the resolver then ignores
the datagram, as it ignores a spoofed one.
"""

from __future__ import annotations

import os
import struct

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any

TYPE_CODES = {"A": 1, "NS": 2, "CNAME": 5, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28}
RCODE_TEXT = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
NOERROR, NXDOMAIN = 0, 3
CLASS_IN = 1
TYPE_OPT = 41
FLAG_QR, FLAG_TC, FLAG_RD = 0x8000, 0x0200, 0x0100
_HEADER = struct.Struct("!6H")
_RECORD = struct.Struct("!HHIH")
_TWO_SHORTS = struct.Struct("!HH")


class MalformedAnswer(ValueError):
    """A datagram that is not a well-formed DNS message."""


class Answer:
    """What the resolver needs of a response: rcode, truncation, the records."""

    __slots__ = ("rcode", "truncated", "records")

    def __init__(self, rcode: int, truncated: bool, records: list[Any]) -> None:
        self.rcode = rcode
        self.truncated = truncated
        self.records = records  # the decoded rdata of the answer section's records of the asked type


def rcode_text(rcode: int) -> str:
    return RCODE_TEXT.get(rcode, f"RCODE{rcode}")


def new_query_id() -> int:
    return int.from_bytes(os.urandom(2), "big")


def make_query(dns: Any, query_id: int, name: str, type_code: int, payload: int) -> bytes:
    """A recursive query for `name` (absolute, without the final dot) with an
    EDNS0 OPT record advertising `payload` bytes.  `dns` is the dnspython
    package with `dns.name` imported."""
    header = _HEADER.pack(query_id, FLAG_RD, 1, 0, 0, 1)
    question = dns.name.from_text(name + ".").to_wire() + _TWO_SHORTS.pack(type_code, CLASS_IN)
    opt = b"\0" + _RECORD.pack(TYPE_OPT, payload, 0, 0)
    return header + question + opt


def parse_answer(dns: Any, wire: bytes, query_id: int, name: str, type_code: int) -> Answer | None:
    """The answer to our query in `wire`, or None when `wire` answers another
    question (wrong id, not a response, another name/type).  Raises
    MalformedAnswer for a datagram that cannot be read."""
    try:
        return _parse(dns, wire, query_id, name, type_code)
    except (struct.error, IndexError, UnicodeError) as error:
        raise MalformedAnswer(str(error)) from None
    except dns.exception.DNSException as error:  # bad pointers, label types, over-long names
        raise MalformedAnswer(str(error) or type(error).__name__) from None


def _parse(dns: Any, wire: bytes, query_id: int, name: str, type_code: int) -> Answer | None:
    answer_id, flags, questions, answers, _authority, _additional = _HEADER.unpack_from(wire, 0)
    if answer_id != query_id or not flags & FLAG_QR or flags & 0x7800:  # opcode must be QUERY
        return None
    rcode = flags & 0x000F
    offset = _HEADER.size
    if questions != 1:
        # only an error may come without the question (RFC 1035 leaves it open)
        return Answer(rcode, False, []) if questions == 0 and rcode not in (NOERROR, NXDOMAIN) else None
    question, offset = _name_at(dns, wire, offset)
    asked_type, asked_class = _TWO_SHORTS.unpack_from(wire, offset)
    offset += _TWO_SHORTS.size
    if asked_type != type_code or asked_class != CLASS_IN or question != name:
        return None
    truncated = bool(flags & FLAG_TC)
    records: list[Any] = []
    for _ in range(answers if not truncated else 0):
        _owner, offset = _name_at(dns, wire, offset)
        record_type, record_class, _ttl, length = _RECORD.unpack_from(wire, offset)
        offset += _RECORD.size
        end = offset + length
        if end > len(wire):
            raise MalformedAnswer("record runs past the end of the message")
        if record_class == CLASS_IN and record_type == type_code:
            records.append(_rdata(dns, wire, offset, end, record_type))
        offset = end
    return Answer(rcode, truncated, records)


def _name_at(dns: Any, wire: bytes, offset: int) -> tuple[str, int]:
    """The name at `offset` (lower case, no final dot) and the offset after it."""
    parsed, used = dns.name.from_wire(wire, offset)
    return parsed.to_text(omit_final_dot=True).lower(), offset + used


def _rdata(dns: Any, wire: bytes, start: int, end: int, record_type: int) -> Any:
    data = wire[start:end]
    if record_type == 1:
        if len(data) != 4:
            raise MalformedAnswer("A record is not 4 bytes")
        return ".".join(str(byte) for byte in data)
    if record_type == 28:
        if len(data) != 16:
            raise MalformedAnswer("AAAA record is not 16 bytes")
        import socket
        return socket.inet_ntop(socket.AF_INET6, data)
    if record_type == 15:
        if len(data) < 3:
            raise MalformedAnswer("short MX record")
        exchange, after = _name_at(dns, wire, start + 2)
        if after != end:
            raise MalformedAnswer("MX record length does not match")
        return (int.from_bytes(data[:2], "big"), exchange)
    if record_type == 16:
        return _character_strings(data)
    target, after = _name_at(dns, wire, start)  # PTR, CNAME, NS
    if after != end:
        raise MalformedAnswer("record length does not match its name")
    return target


def _character_strings(data: bytes) -> list[bytes]:
    strings = []
    offset = 0
    while offset < len(data):
        length = data[offset]
        if offset + 1 + length > len(data):
            raise MalformedAnswer("TXT string runs past its record")
        strings.append(data[offset + 1:offset + 1 + length])
        offset += 1 + length
    return strings
