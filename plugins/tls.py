"""# tls

STARTTLS (RFC 3207) and SMTPS (implicit TLS, port 465) for qpsmtpd.

## Configuration

In `config/plugins` (load it before the other `connect` plugins when
SMTPS is used):

    tls [cert_path [key_path [ca_path [dhparam_path]]]]

* `cert_path` — the server certificate (PEM, may hold the chain).
  Default `ssl/qpsmtpd-server.crt`.
* `key_path` — its private key. Default `ssl/qpsmtpd-server.key`.
* `ca_path` — a CA file, loaded when it exists. Default `ssl/qpsmtpd-ca.crt`.
* `dhparam_path` — Diffie-Hellman parameters, used when the file exists and
  is not empty. Default `ssl/qpsmtpd-dhparam.pem`.

Relative default paths are looked up in `ssl/` below the working
directory, then `config/ssl/` below it, then `config/ssl/` of the
installation.  STARTTLS is advertised only when the certificate and the
key are readable; otherwise the plugin logs an error and does nothing.

Config files:

* `tls_ciphers` — an OpenSSL cipher string for TLS 1.2 (default `HIGH`).
  TLS 1.0 and 1.1 are never accepted.
* `tls_before_auth` — when set (anything but `0`), AUTH is neither
  advertised nor accepted (`503 SSL/TLS required before AUTH`) until TLS is
  active.

## Behaviour

* EHLO advertises `STARTTLS` until TLS is active; after the upgrade the
  client must say EHLO again and it is not advertised any more.
* `STARTTLS` with an argument: `501 Syntax error (no parameters allowed)`.
  Before EHLO, or once TLS is active, `STARTTLS` is an unknown command.
* `220 Go ahead with TLS`, then the handshake on the same file descriptors
  (a TCP socket, a socket pair or two pipes alike).  Anything the client
  sent after `STARTTLS` before the handshake is thrown away, so no command
  can be smuggled into the encrypted session.
* After the handshake the session starts afresh (no HELO, no transaction,
  no AUTH), as RFC 3207 requires; connection notes stay.
* A failed handshake ends the connection.
* The connection notes `tls_enabled` (1), `tls_cipher` and `tls_version`
  are set; the Received line then says `with ESMTPS (<cipher> encrypted)`
  (`ESMTPSA` with AUTH).

## SMTPS (port 465)

When the local port is 465 (`TCPLOCALPORT`), or the environment variable
`SMTPS` is set to a non-empty value other than `0`, the handshake happens
before the greeting.  A failed handshake ends the connection.
"""

import os
from qpsmtpd.constants import DENY_DISCONNECT, DECLINED, DONE, LOGERROR, LOGINFO, LOGDEBUG
from qpsmtpd.args import Arguments, Option

arguments = Arguments(
    positional=(Option("cert", help="certificate (default config/tls/qpsmtpd-server.crt)"),
                Option("key", help="private key (default config/tls/qpsmtpd-server.key)"),
                Option("ca", help="CA certificates (default config/tls/qpsmtpd-ca.crt)"),
                Option("dhparam", help="DH parameters (default config/tls/qpsmtpd-dhparam.pem)")),
)


def register(self, qp, *args):
    paths = [self.opts[name] for name in ("cert", "key", "ca", "dhparam")]
    names = ("qpsmtpd-server.crt", "qpsmtpd-server.key", "qpsmtpd-ca.crt", "qpsmtpd-dhparam.pem")
    self.tls_cert, self.tls_key, self.tls_ca, self.tls_dhparam = (
        path or self.default_path(name) for path, name in zip(paths, names))
    self.context = None
    if not (os.access(self.tls_cert, os.R_OK) and os.access(self.tls_key, os.R_OK)):
        self.log(LOGERROR, "Cannot locate cert/key! STARTTLS is not offered")
        self.tls_cert = None


def default_path(self, name):
    candidates = [os.path.join("ssl", name), os.path.join("config", "ssl", name),
                  os.path.join(self.qp.install_dir, "config", "ssl", name)]
    for candidate in candidates:
        if os.path.exists(candidate):
            return candidate
    return candidates[0]


def can_do_tls(self):
    return bool(self.tls_cert)


def tls_context(self):
    if self.context is None:
        from qpsmtpd.tls import make_context
        ciphers = " ".join(self.qp.config("tls_ciphers")) or "HIGH"
        self.context = make_context(self.tls_cert, self.tls_key, self.tls_ca, ciphers, self.tls_dhparam)
        self.log(LOGDEBUG, f"ciphers: {ciphers}")
    return self.context


def upgrade(self, discard_plaintext=True):
    """The handshake; True on success.  Never raises."""
    try:
        from qpsmtpd.tls import start_tls
        start_tls(self.qp, self.tls_context(), discard_plaintext)
    except Exception as error:  # TlsError, a bad certificate or cipher string ...
        self.log(LOGINFO, f"fail: TLS handshake failed: {type(error).__name__}: {error}")
        return False
    return True


def implicit_tls(self):
    if self.connection.local_port == "465":
        return True
    return os.environ.get("SMTPS", "") not in ("", "0")


def hook_connect(self, transaction):
    if not self.implicit_tls():
        self.log(LOGDEBUG, "skip, not SMTPS")
        return DECLINED
    if not self.can_do_tls() or not self.upgrade(discard_plaintext=False):
        self.log(LOGINFO, "fail, unable to establish SSL")
        return DENY_DISCONNECT, "Cannot establish SSL session"
    self.log(LOGINFO, "pass, connect via SMTPS")
    return DECLINED


def hook_ehlo(self, transaction, *args):
    if not self.can_do_tls() or self.connection.notes.get("tls_enabled"):
        return DECLINED
    capabilities = transaction.notes.get("capabilities") or []
    capabilities.append("STARTTLS")
    transaction.notes["capabilities"] = capabilities
    return DECLINED


def hook_unrecognized_command(self, transaction, cmd, *args):
    if cmd.lower() != "starttls" or not self.can_do_tls():
        return DECLINED
    if self.connection.notes.get("tls_enabled") or self.connection.hello != "ehlo":
        return DECLINED
    if args:
        self.qp.respond(501, "Syntax error (no parameters allowed)", esc="5.5.4")
        return DONE
    self.qp.respond(220, "Go ahead with TLS", esc="2.0.0")
    if not self.upgrade():
        return DENY_DISCONNECT, "TLS Negotiation Failed"
    self.log(LOGINFO, "TLS setup returning")
    return DONE


def hook_post_connection(self, transaction):
    transport = self.qp.io.transport if hasattr(self.qp, "io") else None
    if self.connection.notes.get("tls_enabled") and hasattr(transport, "close_notify"):
        transport.close_notify()
    return DECLINED
