"""TLS over the session's own file descriptors, for STARTTLS and SMTPS.

`TlsTransport` wraps the plain `reader.Transport` with `ssl.SSLObject` and
two memory BIOs: the TLS records go through fds 0/1 exactly like plain
bytes, so the same code works over a TCP socket, a socket pair or pipes.
It offers what `SmtpIO` needs (`read`, `write`, `wait_readable`,
`pending`).

`start_tls(smtp, context)` is the whole upgrade: it drops the plaintext the
client sent after STARTTLS (the CVE-2011-0411 class of command injection),
runs the handshake, puts the TLS transport in place, records
`tls_enabled`/`tls_cipher`/`tls_version` in the connection notes and
resets the session (HELO/EHLO, transaction, AUTH) as RFC 3207 requires.

This module imports `ssl`; it is only imported when TLS is configured and
used.
"""

from __future__ import annotations

import os
import ssl
from typing import TYPE_CHECKING

from .constants import LOGDEBUG, LOGINFO, LOGNOTICE
from .reader import READ_SIZE, ConnectionLost, Timeout

if TYPE_CHECKING:
    from .reader import Transport
    from .smtp import SMTP

HANDSHAKE_TIMEOUT = 30.0


class TlsError(Exception):
    """The TLS handshake failed (bad client hello, timeout, connection lost)."""


def make_context(cert: str, key: str, ca: str | None = None, ciphers: str | None = None,
                 dhparam: str | None = None) -> ssl.SSLContext:
    """A server context: TLS 1.2 or newer, the given certificate chain and cipher list."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_COMPRESSION
    context.load_cert_chain(cert, key)
    if ca and os.path.isfile(ca):
        context.load_verify_locations(cafile=ca)
    if ciphers:
        context.set_ciphers(ciphers)
    if dhparam and os.path.isfile(dhparam) and os.path.getsize(dhparam):
        context.load_dh_params(dhparam)
    return context


class TlsTransport:
    """TLS records on a plain transport: a drop-in for `reader.Transport`."""

    def __init__(self, raw: Transport, context: ssl.SSLContext, timeout: float = HANDSHAKE_TIMEOUT) -> None:
        self.raw = raw
        self.timeout = timeout
        self.fd_in = getattr(raw, "fd_in", -1)
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._eof = False

    # -- plumbing -------------------------------------------------------------
    def _flush(self) -> None:
        data = self._outgoing.read()
        if data:
            self.raw.write(data)

    def _feed(self, timeout: float | None) -> bool:
        """Move more raw bytes into the TLS engine; False at end of input."""
        if self._eof:
            return False
        if not self.raw.wait_readable(timeout):
            raise Timeout()
        data = self.raw.read(READ_SIZE)
        if not data:
            self._eof = True
            self._incoming.write_eof()
            return False
        self._incoming.write(data)
        return True

    def handshake(self) -> None:
        """Run the server side of the handshake; raises TlsError."""
        while True:
            try:
                self._tls.do_handshake()
                self._flush()
                return
            except ssl.SSLWantReadError:
                try:
                    self._flush()
                    if not self._feed(self.timeout):
                        raise TlsError("connection closed during the TLS handshake")
                except (Timeout, ConnectionLost) as error:
                    raise TlsError(f"{type(error).__name__} during the TLS handshake") from error
            except ssl.SSLError as error:
                try:
                    self._flush()  # the alert, if any
                except ConnectionLost:
                    pass
                raise TlsError(str(error)) from error

    # -- the Transport interface --------------------------------------------------
    def read(self, size: int = READ_SIZE) -> bytes:
        """Decrypted bytes; b"" when the client closed (with or without close_notify)."""
        while True:
            try:
                data = self._tls.read(size)
                self._flush()
                return data
            except ssl.SSLWantReadError:
                self._flush()
                if not self._feed(self.timeout):
                    return b""
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""
            except ssl.SSLError:
                return b""

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = self._tls.write(view)
            except ssl.SSLWantReadError:
                self._flush()
                if not self._feed(self.timeout):
                    raise ConnectionLost("client closed the TLS connection") from None
                continue
            except ssl.SSLError as error:
                raise ConnectionLost(str(error)) from error
            view = view[written:]
            self._flush()

    def pending(self) -> bool:
        """Decrypted or still-encrypted bytes already read from the fd."""
        return self._tls.pending() > 0 or self._incoming.pending > 0

    def wait_readable(self, timeout: float | None) -> bool:
        if self.pending():
            return True
        return self.raw.wait_readable(timeout)

    # -- information and shutdown ----------------------------------------------------
    def cipher(self) -> str:
        info = self._tls.cipher()
        return info[0] if info else ""

    def version(self) -> str:
        return self._tls.version() or ""

    def close_notify(self) -> None:
        """Send our close_notify (best effort, never blocks)."""
        try:
            self._tls.unwrap()
        except (ssl.SSLError, ValueError):
            pass
        try:
            self._flush()
        except ConnectionLost:
            pass


def start_tls(smtp: SMTP, context: ssl.SSLContext, discard_plaintext: bool = True) -> None:
    """Upgrade the session in place; raises TlsError when the handshake fails."""
    if discard_plaintext:
        dropped = smtp.io.discard_buffer()
        if dropped:
            smtp.log(LOGNOTICE, f"discarded {dropped} bytes of plaintext sent before the TLS handshake")
    transport = TlsTransport(smtp.io.transport, context, timeout=min(smtp.io.timeout or HANDSHAKE_TIMEOUT,
                                                                     HANDSHAKE_TIMEOUT))
    transport.handshake()
    transport.timeout = smtp.config_int("timeoutsmtpd", 0) or smtp.config_int("timeout", 1200)
    smtp.io.transport = transport  # type: ignore[assignment]
    notes = smtp.connection.notes
    notes["tls_enabled"] = 1
    notes["tls_cipher"] = transport.cipher()
    notes["tls_version"] = transport.version()
    smtp.log(LOGINFO, f"TLS established: {notes['tls_version']} {notes['tls_cipher']}")
    reset_session(smtp)


def reset_session(smtp: SMTP) -> None:
    """RFC 3207 4.2: forget what the client told us before TLS (EHLO, transaction, AUTH)."""
    from .auth import reset_auth

    conn = smtp.connection
    conn.hello = ""
    conn.hello_host = ""
    reset_auth(smtp)
    smtp.commands.discard("auth")
    smtp.reset_transaction()
    smtp.log(LOGDEBUG, "session state reset after STARTTLS")
