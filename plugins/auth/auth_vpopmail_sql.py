"""# auth/auth_vpopmail_sql — AUTH PLAIN, LOGIN and CRAM-MD5 against vpopmail's MySQL/MariaDB table

Authenticates users straight from the `vpopmail` table of a vpopmail
installation built with MySQL (`pw_name`, `pw_domain`, `pw_passwd`,
`pw_clear_passwd`).  The client must log in with the full address
(`user@domain`); both parts are looked up in lower case.  Domain aliases
are not followed.

Needs the Python library PyMySQL (Debian `python3-pymysql`, pip
`PyMySQL`); it is imported only when a client authenticates.  The plugin
refuses to load when it is missing.

## Configuration

In `config/plugins` (no arguments):

    auth/auth_vpopmail_sql

Config files (first line of each), as for the Perl plugin:

* `vpopmail_mysql_dsn` — a Perl DBI data source, default
  `dbi:mysql:dbname=vpopmail;host=127.0.0.1`.  Understood keys: `dbname`
  (or `database`, `db`, or a bare name), `host`, `port`, `mysql_socket`.
  Without `host`, or with `host=localhost` and no `port`, the server's unix
  socket is used (`mysql_socket`, default `/run/mysqld/mysqld.sock`), as
  DBD::mysql does.
* `vpopmail_mysql_user` — default `vpopmailuser`.
* `vpopmail_mysql_pass` — default `vpoppasswd`.

A read-only database user is enough.  The server has 5 seconds to accept
the connection and 10 seconds to answer.

## Results

* database unreachable, user name without `@domain`, or no such row:
  `DECLINED` (another auth plugin may try; otherwise the client gets 535);
* a row with neither password: `DENY` (`auth_vmysql - no such user`);
* PLAIN and LOGIN: the password is compared with `pw_clear_passwd`, then
  with the `crypt()` hash in `pw_passwd`;
* CRAM-MD5 needs `pw_clear_passwd` (vpopmail's `--enable-clear-passwd`);
  without it the attempt is `DECLINED`;
* wrong password: `DENY` (`auth_vpopmail_sql - wrong password`); right
  password: `OK`.
"""

from __future__ import annotations

from qpsmtpd.args import Arguments
from qpsmtpd.auth import validate_password
from qpsmtpd.constants import DECLINED, DENY, LOGDEBUG, LOGERROR, LOGINFO
from qpsmtpd.plugin import Plugin

DEFAULT_DSN = "dbi:mysql:dbname=vpopmail;host=127.0.0.1"
DEFAULT_SOCKET = "/run/mysqld/mysqld.sock"
CONNECT_TIMEOUT = 5
READ_TIMEOUT = 10
QUERY = "SELECT pw_passwd, pw_clear_passwd FROM vpopmail WHERE pw_name = %s AND pw_domain = %s"


def parse_dsn(dsn: str) -> dict[str, object]:
    """PyMySQL connect() arguments for a DBI `dbi:mysql:...` data source; ValueError if it is not one."""
    scheme, _colon, rest = dsn.partition(":")
    driver, _colon, attributes = rest.partition(":")
    if scheme.lower() != "dbi" or driver.lower() not in ("mysql", "mariadb"):
        raise ValueError(f"not a dbi:mysql data source: {dsn!r}")
    settings: dict[str, str] = {}
    for part in attributes.replace(",", ";").split(";"):
        key, equals, value = part.strip().partition("=")
        if not equals:
            if key:
                settings["dbname"] = key
            continue
        settings[key.strip().lower()] = value.strip()
    database = settings.get("dbname") or settings.get("database") or settings.get("db") or "vpopmail"
    host = settings.get("host", "localhost")
    args: dict[str, object] = {"database": database}
    if host == "localhost" and "port" not in settings:  # DBD::mysql's rule: localhost means the socket
        args["unix_socket"] = settings.get("mysql_socket") or DEFAULT_SOCKET
    else:
        args["host"] = host
        args["port"] = int(settings.get("port") or 3306)
    return args


class AuthVpopmailSql(Plugin):
    arguments = Arguments()
    requires = ("pymysql",)  # checked when the plugin loads (qpsmtpd.optional)

    def register(self, qp, *args) -> None:
        for hook in ("auth-plain", "auth-login", "auth-cram-md5"):
            self.register_hook(hook, "auth_vmysql")

    def check_config(self) -> list[str]:
        """Problems for --check-config."""
        try:
            parse_dsn(self.qp.config_value("vpopmail_mysql_dsn") or DEFAULT_DSN)
        except ValueError as error:
            return [f"vpopmail_mysql_dsn: {error}"]
        return []

    def auth_vmysql(self, transaction, method, user, pass_clear, pass_hash, ticket=None):
        name, at, domain = user.lower().partition("@")
        if not at or not domain:
            self.log(LOGINFO, f"skip: missing domain: {user.lower()}")
            return DECLINED
        row = self.vpopmail_user(name, domain)
        if row is None:
            return DECLINED
        stored_crypt, stored_clear = row
        if not stored_crypt and not stored_clear:
            self.log(LOGINFO, "fail: no such user")
            return DENY, "auth_vmysql - no such user"
        return validate_password(self, src_clear=stored_clear, src_crypt=stored_crypt,
                                 attempt_clear=pass_clear, attempt_hash=pass_hash,
                                 method=method, ticket=ticket, deny=DENY)

    def vpopmail_user(self, name: str, domain: str) -> tuple[str, str] | None:
        """(pw_passwd, pw_clear_passwd) of the row, None when there is none or the database fails."""
        import pymysql
        try:
            connect_args = parse_dsn(self.qp.config_value("vpopmail_mysql_dsn") or DEFAULT_DSN)
        except ValueError as error:
            self.log(LOGERROR, f"skip: {error}")
            return None
        self.log(LOGDEBUG, f"auth_vpopmail_sql: {name}@{domain}")
        try:
            connection = pymysql.connect(
                user=self.qp.config_value("vpopmail_mysql_user") or "vpopmailuser",
                password=self.qp.config_value("vpopmail_mysql_pass") or "vpoppasswd",
                connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT, write_timeout=READ_TIMEOUT,
                charset="utf8mb4", **connect_args)
        except pymysql.Error as error:
            self.log(LOGERROR, f"skip: db connection failed: {error}")
            return None
        try:
            with connection.cursor() as cursor:
                cursor.execute(QUERY, (name, domain))
                row = cursor.fetchone()
        except pymysql.Error as error:
            self.log(LOGERROR, f"skip: db query failed: {error}")
            return None
        finally:
            connection.close()
        if row is None:
            self.log(LOGINFO, f"skip: no such user {name}@{domain}")
            return None
        return _text(row[0]), _text(row[1])


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return str(value)
