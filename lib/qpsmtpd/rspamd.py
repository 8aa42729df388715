"""A small HTTP/1.1 client for rspamd's `/checkv2`, over TCP or a unix socket.

    client = RspamdClient(host="127.0.0.1", port=11333, timeout=20)   # or socket_path="/run/rspamd/normal.sock"
    result = client.check({"IP": "192.0.2.1", "Rcpt": ["a@example.org"]}, transaction.iter_message(), size)

The message is streamed in the blocks the iterator yields (never joined);
the reply is JSON, parsed into a dict.  Connecting, every write and every
read share one deadline (`timeout` seconds for the whole request), so a
slow or silent rspamd costs at most that long.  A daemon that is down,
closes the connection, answers with another status than 200, or sends
anything that is not a JSON object raises `RspamdError`.

Written on the socket module rather than http.client, whose import (email
parser and friends) would cost every connection that runs the plugin.
"""

from __future__ import annotations

import _socket as socket  # the C module: socket.py would import enum and selectors (~5 ms)
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

MAX_REPLY = 4 << 20  # a /checkv2 answer is a few KB; more is garbage


class RspamdError(Exception):
    """rspamd could not be asked: down, too slow, connection lost or an answer that is not one."""


class RspamdClient:
    def __init__(self, host: str = "127.0.0.1", port: int = 11333, socket_path: str | None = None,
                 timeout: float = 20.0, connect_timeout: float = 5.0) -> None:
        self.host = host
        self.port = port
        self.socket_path = socket_path
        self.timeout = timeout
        self.connect_timeout = connect_timeout

    @property
    def address(self) -> str:
        return f"unix:{self.socket_path}" if self.socket_path else f"{self.host}:{self.port}"

    def check(self, headers: Mapping[str, str | list[str]], message: Iterable[bytes], size: int) -> dict[str, Any]:
        """POST the message to /checkv2 with `headers` (a list value gives one header line each)."""
        deadline = time.monotonic() + self.timeout
        sock = self._connect(deadline)
        try:
            self._send(sock, self._request_head(headers, size), deadline)
            sent = 0
            for block in message:
                self._send(sock, block, deadline)
                sent += len(block)
            if sent != size:
                raise RspamdError(f"message size changed while sending ({sent} of {size} bytes)")
            status, _reply_headers, body = self._read_reply(sock, deadline)
        finally:
            sock.close()
        if status != 200:
            raise RspamdError(f"{self.address} answered HTTP {status}: {body[:120]!r}")
        return _json_object(body, self.address)

    def _request_head(self, headers: Mapping[str, str | list[str]], size: int) -> bytes:
        lines = ["POST /checkv2 HTTP/1.1", f"Host: {self.host if not self.socket_path else 'localhost'}",
                 f"Content-Length: {size}", "Connection: close"]
        for name, value in headers.items():
            for item in value if isinstance(value, list) else [value]:
                lines.append(f"{name}: {_header_safe(str(item))}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")

    def _connect(self, deadline: float) -> socket.socket:
        family = socket.AF_UNIX if self.socket_path else socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(min(self.connect_timeout, max(deadline - time.monotonic(), 0.001)))
            sock.connect(self.socket_path if self.socket_path else (self.host, self.port))
        except OSError as error:
            sock.close()
            raise RspamdError(f"cannot connect to {self.address}: {_describe(error)}") from None
        return sock

    def _send(self, sock: socket.socket, data: bytes, deadline: float) -> None:
        try:
            _set_deadline(sock, deadline, self.address)
            sock.sendall(data)
        except OSError as error:
            raise RspamdError(f"lost connection to {self.address} while sending: {_describe(error)}") from None

    def _recv(self, sock: socket.socket, deadline: float) -> bytes:
        try:
            _set_deadline(sock, deadline, self.address)
            return sock.recv(65536)
        except OSError as error:
            raise RspamdError(f"no answer from {self.address}: {_describe(error)}") from None

    def _read_reply(self, sock: socket.socket, deadline: float) -> tuple[int, dict[str, str], bytes]:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self._recv(sock, deadline)
            if not chunk:
                raise RspamdError(f"{self.address} closed the connection without an answer")
            data += chunk
            if len(data) > 65536 and b"\r\n\r\n" not in data:
                raise RspamdError(f"garbage from {self.address}: no end of HTTP header")
        head, _sep, body = data.partition(b"\r\n\r\n")
        status, headers = _parse_head(head, self.address)
        if headers.get("transfer-encoding", "").lower() == "chunked":
            return status, headers, self._read_chunked(sock, body, deadline)
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit() or int(length) > MAX_REPLY:
                raise RspamdError(f"garbage from {self.address}: Content-Length {length[:20]!r}")
            while len(body) < int(length):
                chunk = self._recv(sock, deadline)
                if not chunk:
                    raise RspamdError(f"{self.address} closed the connection in the middle of its answer")
                body += chunk
            return status, headers, body[:int(length)]
        while True:  # no length: the answer ends with the connection
            chunk = self._recv(sock, deadline)
            if not chunk:
                return status, headers, body
            body += chunk
            if len(body) > MAX_REPLY:
                raise RspamdError(f"garbage from {self.address}: answer too big")

    def _read_chunked(self, sock: socket.socket, data: bytes, deadline: float) -> bytes:
        body = b""
        while True:
            while b"\r\n" not in data:
                chunk = self._recv(sock, deadline)
                if not chunk:
                    raise RspamdError(f"{self.address} closed the connection in a chunked answer")
                data += chunk
            size_line, _sep, data = data.partition(b"\r\n")
            try:
                size = int(size_line.split(b";")[0].strip(), 16)
            except ValueError:
                raise RspamdError(f"garbage from {self.address}: bad chunk size {size_line[:20]!r}") from None
            if size == 0:
                return body
            while len(data) < size + 2:
                chunk = self._recv(sock, deadline)
                if not chunk:
                    raise RspamdError(f"{self.address} closed the connection in a chunked answer")
                data += chunk
            body += data[:size]
            data = data[size + 2:]
            if len(body) > MAX_REPLY:
                raise RspamdError(f"garbage from {self.address}: answer too big")


def _parse_head(head: bytes, address: str) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    words = lines[0].split(" ", 2)
    if len(words) < 2 or not words[0].startswith("HTTP/1.") or not words[1].isdigit():
        raise RspamdError(f"garbage from {address}: {lines[0][:60]!r} is not an HTTP status line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return int(words[1]), headers


def _json_object(body: bytes, address: str) -> dict[str, Any]:
    try:
        result = loads(body.decode("utf-8"))
    except (ValueError, RecursionError) as error:
        raise RspamdError(f"garbage from {address}: not JSON ({error})") from None
    if not isinstance(result, dict):
        raise RspamdError(f"garbage from {address}: JSON {type(result).__name__}, not an object")
    return result


_WHITESPACE = " \t\n\r"
_NUMBER_CHARS = frozenset("0123456789+-.eE")
_LITERALS = {"true": True, "false": False, "null": None}


def loads(text: str) -> Any:
    """JSON text as Python values (RFC 8259), strings decoded by the C scanner of the json package.

    A small parser instead of `json.loads`: importing json imports `re` and
    `enum`, about 5 ms of every connection that runs the plugin.
    """
    value, end = _value(text, _skip(text, 0))
    if _skip(text, end) != len(text):
        raise ValueError(f"extra data at offset {end}")
    return value


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WHITESPACE:
        pos += 1
    return pos


def _value(text: str, pos: int) -> tuple[Any, int]:
    if pos >= len(text):
        raise ValueError("unexpected end of JSON")
    char = text[pos]
    if char == '"':
        from _json import scanstring

        return scanstring(text, pos + 1, True)
    if char == "{":
        return _object(text, pos + 1)
    if char == "[":
        return _array(text, pos + 1)
    for word, literal in _LITERALS.items():
        if text.startswith(word, pos):
            return literal, pos + len(word)
    end = pos
    while end < len(text) and text[end] in _NUMBER_CHARS:
        end += 1
    number = text[pos:end]
    if not number or number[0] not in "-0123456789":
        raise ValueError(f"unexpected {char!r} at offset {pos}")
    if "." in number or "e" in number or "E" in number:
        return float(number), end
    return int(number), end


def _object(text: str, pos: int) -> tuple[dict[str, Any], int]:
    result: dict[str, Any] = {}
    pos = _skip(text, pos)
    if text.startswith("}", pos):
        return result, pos + 1
    while True:
        if not text.startswith('"', pos):
            raise ValueError(f"object key expected at offset {pos}")
        key, pos = _value(text, pos)
        pos = _skip(text, pos)
        if not text.startswith(":", pos):
            raise ValueError(f"':' expected at offset {pos}")
        result[key], pos = _value(text, _skip(text, pos + 1))
        pos = _skip(text, pos)
        if text.startswith("}", pos):
            return result, pos + 1
        if not text.startswith(",", pos):
            raise ValueError(f"',' or '}}' expected at offset {pos}")
        pos = _skip(text, pos + 1)


def _array(text: str, pos: int) -> tuple[list[Any], int]:
    result: list[Any] = []
    pos = _skip(text, pos)
    if text.startswith("]", pos):
        return result, pos + 1
    while True:
        item, pos = _value(text, pos)
        result.append(item)
        pos = _skip(text, pos)
        if text.startswith("]", pos):
            return result, pos + 1
        if not text.startswith(",", pos):
            raise ValueError(f"',' or ']' expected at offset {pos}")
        pos = _skip(text, pos + 1)


def _set_deadline(sock: socket.socket, deadline: float, address: str) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise RspamdError(f"{address} timed out")
    sock.settimeout(remaining)


def _header_safe(text: str) -> str:
    """No CR, LF or other control character from a client reaches a request header."""
    return "".join(char if char >= " " and char != "\x7f" else " " for char in text)


def _describe(error: OSError) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    return error.strerror or str(error)
