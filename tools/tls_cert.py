#!/usr/bin/env python3
"""tls_cert — make the keys and certificates the `tls` plugin loads by default.

The Perl qpsmtpd ships this as `plugins/tls_cert`.  Run it from the
directory qpsmtpd runs in (the `tls` plugin looks for `ssl/` below its
working directory, then `config/ssl/`):

    cd /opt/qpsmtpd && /usr/bin/python3 tools/tls_cert.py --CN mx.example.com

It makes, with the `openssl` command (Debian package `openssl`):

* `ssl/qpsmtpd-ca.key`, `ssl/qpsmtpd-ca.crt` — a private CA (RSA 2048,
  valid 6 years);
* `ssl/qpsmtpd-server.key`, `ssl/qpsmtpd-server.csr`,
  `ssl/qpsmtpd-server.crt` — the server's key (RSA 2048) and certificate
  signed by that CA (valid 2 years, subjectAltName DNS:<CN>, for TLS
  servers);
* `ssl/qpsmtpd-dhparam.pem` — Diffie-Hellman parameters (2048 bits);
* `ssl/.cert.serial` — the CA's serial number file.

Keys are written 0600 (with `--user smtpd` the server key belongs to
that user, so the server can read it).  Existing files are never overwritten unless
`--force` is given.  Then `tls` with no arguments in `config/plugins` uses
them; clients that should verify the server need `qpsmtpd-ca.crt`.

Options (defaults in brackets; the Perl script's spellings are accepted):

    --C, --Country            two-letter country [XY]
    --ST, --State             state [unknown]
    --L, --Locality, --City   city [unknown]
    --O, --Organization       organization [QSMTPD]
    --OU, --OrganizationalUnit, --U   unit [Server]
    --CN, --CommonName, --N   the server's host name [this host's name]
    --email, --emailAddress, --E   postmaster address [postmaster@<CN>]
    --dir DIR                 where to write [ssl]
    --no-dhparam              skip the Diffie-Hellman parameters
    --user NAME               give the server key to this user (the one qpsmtpd runs as)
    --force                   replace existing files

Exit status 0 when everything was made, 1 when a file already exists, 2 on
a usage error or when openssl failed (its message is shown).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile

FILES = ("qpsmtpd-ca.key", "qpsmtpd-ca.crt", "qpsmtpd-server.key", "qpsmtpd-server.csr",
         "qpsmtpd-server.crt", "qpsmtpd-dhparam.pem", ".cert.serial")
KEY_BITS = "2048"
CA_DAYS = str(365 * 6)
SERVER_DAYS = str(365 * 2)


class OpensslFailed(Exception):
    pass


def parse_args(argv: list[str]) -> argparse.Namespace:
    hostname = socket.getfqdn() or socket.gethostname()
    parser = argparse.ArgumentParser(prog="tls_cert", description="Make the TLS key and certificates for qpsmtpd.",
                                     allow_abbrev=False)
    parser.add_argument("--C", "--Country", dest="C", default="XY")
    parser.add_argument("--ST", "--State", dest="ST", default="unknown")
    parser.add_argument("--L", "--Locality", "--City", dest="L", default="unknown")
    parser.add_argument("--O", "--Organization", dest="O", default="QSMTPD")
    parser.add_argument("--OU", "--OrganizationalUnit", "--U", dest="OU", default="Server")
    parser.add_argument("--CN", "--CommonName", "--N", dest="CN", default=hostname)
    parser.add_argument("--email", "--emailAddress", "--E", dest="email")
    parser.add_argument("--dir", default="ssl")
    parser.add_argument("--no-dhparam", action="store_true")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--user")
    args = parser.parse_args(argv)
    args.email = args.email or f"postmaster@{args.CN}"
    for name in ("C", "ST", "L", "O", "OU", "CN", "email"):
        value = getattr(args, name)
        if not value or not value.isprintable():
            parser.error(f"--{name}: give a non-empty value without control characters")
    if len(args.C) != 2:
        parser.error("--C: the country is two letters (ISO 3166), e.g. DE")
    return args


def config_value(text: str) -> str:
    """A value for an openssl config file: taken literally."""
    return text.replace("\\", "\\\\").replace("$", "\\$").replace('"', '\\"')


def request_config(args: argparse.Namespace, unit: str) -> str:
    subject = {"C": args.C, "ST": args.ST, "L": args.L, "O": args.O, "OU": unit, "CN": args.CN,
               "emailAddress": args.email}
    lines = ["[ req ]", f"default_bits = {KEY_BITS}", "distinguished_name = subject", "prompt = no",
             "x509_extensions = ca_extensions", "string_mask = utf8only", "utf8 = yes", "", "[ subject ]"]
    lines += [f"{key} = {config_value(value)}" for key, value in subject.items()]
    lines += ["", "[ ca_extensions ]", "basicConstraints = critical, CA:true",
              "keyUsage = critical, keyCertSign, cRLSign", "subjectKeyIdentifier = hash"]
    return "\n".join(lines) + "\n"


def server_extensions(args: argparse.Namespace) -> str:
    return ("basicConstraints = CA:false\n"
            "keyUsage = critical, digitalSignature, keyEncipherment\n"
            "extendedKeyUsage = serverAuth\n"
            f"subjectAltName = DNS:{config_value(args.CN)}\n"
            "nsComment = \"qpsmtpd TLS certificate\"\n")


def openssl(openssl_path: str, *argv: str) -> None:
    done = subprocess.run([openssl_path, *argv], check=False, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if done.returncode != 0:
        raise OpensslFailed(f"openssl {argv[0]} failed ({done.returncode}): {done.stderr.strip()}")


def make_key(openssl_path: str, path: str) -> None:
    old_umask = os.umask(0o077)
    try:
        openssl(openssl_path, "genrsa", "-out", path, KEY_BITS)
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)


def make_all(args: argparse.Namespace, openssl_path: str) -> None:
    directory = args.dir
    path = {name: os.path.join(directory, name) for name in FILES}
    with tempfile.TemporaryDirectory(prefix="tls_cert-") as work:
        ca_config = os.path.join(work, "ca.cnf")
        server_config = os.path.join(work, "server.cnf")
        extensions = os.path.join(work, "server.ext")
        with open(ca_config, "w") as handle:
            handle.write(request_config(args, "CA"))
        with open(server_config, "w") as handle:
            handle.write(request_config(args, args.OU))
        with open(extensions, "w") as handle:
            handle.write(server_extensions(args))
        make_key(openssl_path, path["qpsmtpd-ca.key"])
        openssl(openssl_path, "req", "-config", ca_config, "-new", "-x509", "-sha256", "-days", CA_DAYS,
                "-key", path["qpsmtpd-ca.key"], "-out", path["qpsmtpd-ca.crt"])
        make_key(openssl_path, path["qpsmtpd-server.key"])
        openssl(openssl_path, "req", "-config", server_config, "-new", "-sha256", "-key", path["qpsmtpd-server.key"],
                "-out", path["qpsmtpd-server.csr"])
        with open(path[".cert.serial"], "w") as handle:
            handle.write("01\n")
        openssl(openssl_path, "x509", "-req", "-sha256", "-days", SERVER_DAYS, "-extfile", extensions,
                "-CA", path["qpsmtpd-ca.crt"], "-CAkey", path["qpsmtpd-ca.key"], "-CAserial", path[".cert.serial"],
                "-in", path["qpsmtpd-server.csr"], "-out", path["qpsmtpd-server.crt"])
    if not args.no_dhparam:
        # DSA-style generation: seconds instead of minutes, fine for ephemeral DH
        openssl(openssl_path, "dhparam", "-dsaparam", "-out", path["qpsmtpd-dhparam.pem"], KEY_BITS)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    openssl_path = shutil.which("openssl")
    if openssl_path is None:
        print("tls_cert: the openssl command is missing (Debian package openssl)", file=sys.stderr)
        return 2
    print(f"Using hostname: {args.CN}")
    existing = [name for name in FILES if os.path.exists(os.path.join(args.dir, name))]
    if existing and not args.force:
        print(f"tls_cert: {args.dir}/ already holds {', '.join(existing)}; use --force to replace them",
              file=sys.stderr)
        return 1
    os.makedirs(args.dir, mode=0o755, exist_ok=True)
    try:
        make_all(args, openssl_path)
    except (OpensslFailed, OSError) as error:
        print(f"tls_cert: {error}", file=sys.stderr)
        return 2
    if args.user:
        import pwd
        try:
            entry = pwd.getpwnam(args.user)
            os.chown(os.path.join(args.dir, "qpsmtpd-server.key"), entry.pw_uid, entry.pw_gid)
        except (KeyError, OSError) as error:
            print(f"tls_cert: cannot give the server key to {args.user}: {error}", file=sys.stderr)
            return 2
    for name in FILES:
        if os.path.exists(os.path.join(args.dir, name)):
            print(os.path.join(args.dir, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
