"""# auth/auth_ldap_bind — AUTH PLAIN and LOGIN by binding to an LDAP directory as the user

Authenticates AUTH PLAIN and AUTH LOGIN users against an LDAP directory:
an anonymous search finds the user's entry (`<ldap_auth_filter_attr>=<name>`
below `ldap_base`, where `<name>` is the AUTH user name in lower case up to
its `@`), then a simple bind as that entry with the password the client
gave decides.

Needs the Python library ldap3 (Debian `python3-ldap3`, pip `ldap3`); it
is imported only when a client authenticates.  The plugin refuses to load
when it is missing.

## Configuration

Settings come from `config/ldap`, one `key value` per line, and may be
overridden by `key value` pairs in `config/plugins`:

    auth/auth_ldap_bind ldap_base ou=people,dc=example,dc=com ldap_host ldap.example.com

`config/ldap`:

    ldap_base ou=people, dc=example, dc=com
    ldap_host 127.0.0.1
    ldap_port 389
    ldap_timeout 5
    ldap_auth_filter_attr uid

* `ldap_base` — the search base (required: without it every attempt is
  declined and the log says `skip: please configure ldap_base`).
* `ldap_host` — host name or IP address of the directory (default
  `127.0.0.1`); `ldap_port` — its port (default 389).  A malformed value
  is logged and the default used.
* `ldap_timeout` — seconds to wait for each step (default 5).
* `ldap_auth_filter_attr` — the attribute that holds the user name
  (default `uid`).

The directory must allow anonymous search for the user entries.

## Results

| situation | result | log |
| --- | --- | --- |
| the bind as the user's entry succeeded | `OK` (`authldap`) | `pass: <user> auth success` |
| no entry, more than one entry, empty password, wrong password | `DECLINED` | `fail: ...` |
| no `ldap_base`, directory unreachable, search error | `DECLINED` | `skip: ...` |

`DECLINED` lets another auth plugin try; when none accepts, the client
gets `535`.  CRAM-MD5 is not offered (a bind needs the clear password).
The user name is escaped for the search filter (RFC 4515), so `*` or
parentheses in it match nothing but themselves, and the password is never
logged.
"""

from __future__ import annotations

import math

from qpsmtpd.args import Arguments, Option
from qpsmtpd.constants import DECLINED, LOGALERT, LOGERROR, LOGINFO, LOGWARN, OK
from qpsmtpd.plugin import Plugin

DEFAULTS = {"ldap_host": "127.0.0.1", "ldap_port": "389", "ldap_timeout": "5", "ldap_auth_filter_attr": "uid"}
TEMPORARY = "authldap - temporary auth error"
WRONG = "authldap - wrong username or password"
LDAP_SUCCESS = 0


class AuthLdapBind(Plugin):
    arguments = Arguments(
        Option("ldap_base", help="search base for the user entries"),
        Option("ldap_host", help="directory host (default 127.0.0.1)"),
        Option("ldap_port", kind="int", minimum=1, maximum=65535, help="directory port (default 389)"),
        Option("ldap_timeout", kind="float", minimum=0.1, help="seconds per step (default 5)"),
        Option("ldap_auth_filter_attr", help="attribute holding the user name (default uid)"),
    )

    requires = ("ldap3",)  # checked when the plugin loads (qpsmtpd.optional)

    def register(self, qp, *args) -> None:
        settings = dict(DEFAULTS)
        for line in self.qp.config("ldap"):
            key, _space, value = line.strip().partition(" ")
            if key and value.strip():
                settings[key] = value.strip()
        for key, value in self.opts.items():
            if (key in DEFAULTS or key == "ldap_base") and value is not None:
                settings[key] = str(value)
        self.settings = self.checked(settings)
        self.register_hook("auth-plain", "authldap")
        self.register_hook("auth-login", "authldap")

    def check_config(self) -> list[str]:
        """Problems for --check-config."""
        return [] if self.settings.get("ldap_base") else ["ldap_base is not set (config/ldap or the plugin line)"]

    def checked(self, settings: dict[str, str]) -> dict[str, str]:
        """Malformed host, port or time-out values replaced by the defaults (logged)."""
        host = settings["ldap_host"]
        if not host or not all(char.isalnum() or char in ".-:" for char in host):
            self.log(LOGWARN, f"invalid ldap_host {host!r}, using {DEFAULTS['ldap_host']}")
            settings["ldap_host"] = DEFAULTS["ldap_host"]
        port = settings["ldap_port"]
        if not (port.isdigit() and 0 < int(port) < 65536):
            self.log(LOGWARN, f"invalid ldap_port {port!r}, using {DEFAULTS['ldap_port']}")
            settings["ldap_port"] = DEFAULTS["ldap_port"]
        try:
            if float(settings["ldap_timeout"]) <= 0:
                raise ValueError
        except ValueError:
            self.log(LOGWARN, f"invalid ldap_timeout {settings['ldap_timeout']!r}, using {DEFAULTS['ldap_timeout']}")
            settings["ldap_timeout"] = DEFAULTS["ldap_timeout"]
        return settings

    def authldap(self, transaction, method, user, pass_clear, pass_hash, ticket=None):
        base = self.settings.get("ldap_base")
        if not base:
            self.log(LOGERROR, "skip: please configure ldap_base")
            return DECLINED, TEMPORARY
        if not pass_clear:
            # an LDAP simple bind with an empty password is an anonymous bind: it would "succeed"
            self.log(LOGINFO, "fail: empty password")
            return DECLINED, WRONG
        name = user.lower().split("@", 1)[0]
        import ldap3
        from ldap3.core.exceptions import LDAPException
        try:
            return self.search_and_bind(ldap3, base, name, user, pass_clear)
        except LDAPException as error:
            self.log(LOGALERT, f"skip: LDAP error: {type(error).__name__}: {error}")
            return DECLINED, TEMPORARY

    def search_and_bind(self, ldap3, base: str, name: str, user: str, password: str):
        from ldap3.utils.conv import escape_filter_chars
        timeout = float(self.settings["ldap_timeout"])
        whole_seconds = max(1, math.ceil(timeout))  # ldap3's receive_timeout takes whole seconds
        server = ldap3.Server(self.settings["ldap_host"], port=int(self.settings["ldap_port"]),
                              connect_timeout=timeout)
        search = ldap3.Connection(server, receive_timeout=whole_seconds, read_only=True, raise_exceptions=False,
                                 check_names=False)  # the directory, not ldap3, judges the base DN
        try:
            if not search.bind():
                self.log(LOGALERT, f"skip: error in initial conn: {search.result.get('description')}")
                return DECLINED, TEMPORARY
            search_filter = f"({self.settings['ldap_auth_filter_attr']}={escape_filter_chars(name)})"
            search.search(base, search_filter, search_scope=ldap3.SUBTREE, attributes=[],
                          size_limit=2, time_limit=whole_seconds)
            code = search.result.get("result")
            entries = list(search.response or [])
        finally:
            search.unbind()
        dns = [entry["dn"] for entry in entries if entry.get("type") == "searchResEntry"]
        if code != LDAP_SUCCESS and not (code == 4 and dns):  # 4: sizeLimitExceeded
            self.log(LOGALERT, f"skip: err {code} in search for user")
            return DECLINED, TEMPORARY
        if len(dns) != 1:
            self.log(LOGINFO, "fail: user not found" if not dns else "fail: more than one entry matches the user")
            return DECLINED, WRONG
        login = ldap3.Connection(server, user=dns[0], password=password, receive_timeout=whole_seconds,
                                 read_only=True, raise_exceptions=False)
        try:
            bound = login.bind()
        finally:
            login.unbind()
        if not bound:
            self.log(LOGINFO, f"fail: error in user bind: {login.result.get('description')}")
            return DECLINED, WRONG
        self.log(LOGINFO, f"pass: {user} auth success")
        return OK, "authldap"
