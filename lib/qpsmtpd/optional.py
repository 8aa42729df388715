"""Optional libraries: which plugin needs which, checked when the plugin loads.

A plugin whose library is not installed must not load (the session then
gets a 421 and the log names the packages), rather than load and answer
`451 Internal error` to every MAIL.  The check asks the import system
whether the module can be found (`importlib.util.find_spec`) and imports
nothing, so it costs well under a millisecond.

Shipped plugins are listed in PLUGIN_LIBRARIES; any plugin class may also
say `requires = ("ldap3",)` (module names).  LIBRARIES names the pip and
Debian packages of each module for the error message.
"""

from __future__ import annotations

# module -> (pip package, Debian package)
LIBRARIES: dict[str, tuple[str, str]] = {
    "dns": ("dnspython", "python3-dnspython"),
    "spf": ("pyspf", "python3-spf"),
    "dkim": ("dkimpy", "python3-dkim"),
    "ldap3": ("ldap3", "python3-ldap3"),
    "maxminddb": ("maxminddb", "python3-maxminddb"),
    "geoip2": ("geoip2", "python3-geoip2"),
    "pymysql": ("PyMySQL", "python3-pymysql"),
    "MySQLdb": ("mysqlclient", "python3-mysqldb"),
    "redis": ("redis", "python3-redis"),
    "cryptography": ("cryptography", "python3-cryptography"),
}

# plugin file name -> modules it imports when it runs
PLUGIN_LIBRARIES: dict[str, tuple[str, ...]] = {
    "sender_permitted_from": ("spf", "dns"),
    "dkim": ("dkim", "dns"),
    "dmarc": ("dns",),
    "dnsbl": ("dns",),
    "rhsbl": ("dns",),
    "uribl": ("dns",),
    "fcrdns": ("dns",),
    "resolvable_fromhost": ("dns",),
    "dns_whitelist_soft": ("dns",),
}



def _helo_modules(args: list[str]) -> tuple[str, ...]:
    """helo's rfc and strict policies look names up; lenient does not."""
    words = [word for arg in args for word in arg.split("=")]
    for index, word in enumerate(words[:-1]):
        if word == "policy" and words[index + 1].lower() in ("rfc", "strict"):
            return ("dns",)
    return ()


# plugin file name -> modules it needs with these arguments
PLUGIN_LIBRARIES_BY_ARGS = {"helo": _helo_modules}

_found: dict[str, bool] = {}


class MissingLibrary(ImportError):
    """A plugin's optional library is not installed."""


def is_installed(module: str) -> bool:
    """True when `import module` would find it (nothing is imported)."""
    found = _found.get(module)
    if found is None:
        import importlib.util

        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        _found[module] = found
    return found


def describe(module: str) -> str:
    pip, debian = LIBRARIES.get(module, (module, f"python3-{module.lower()}"))
    return f"the Python module '{module}' is not installed (Debian: apt-get install {debian}; pip: pip install {pip})"


def required_modules(plugin_file: str, plugin_class: type | None = None,
                     args: list[str] | tuple[str, ...] = ()) -> tuple[str, ...]:
    declared = tuple(getattr(plugin_class, "requires", ()) or ()) if plugin_class is not None else ()
    by_args = PLUGIN_LIBRARIES_BY_ARGS.get(plugin_file)
    return PLUGIN_LIBRARIES.get(plugin_file, ()) + (by_args(list(args)) if by_args else ()) + declared


def missing(plugin_file: str, plugin_class: type | None = None, args: list[str] | tuple[str, ...] = ()) -> list[str]:
    """One message per library the plugin needs (with these arguments) and cannot import."""
    return [describe(module) for module in dict.fromkeys(required_modules(plugin_file, plugin_class, args))
            if not is_installed(module)]
