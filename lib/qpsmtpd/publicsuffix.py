"""The public suffix list: organizational domains (dmarc) and registrable domains (uribl).

Where the list comes from, first found wins:

1. `config/public_suffix_list`: either the list itself (the format of
   https://publicsuffix.org/list/, as qpsmtpd ships it), or one line
   naming the absolute path of such a file;
2. Debian's `/usr/share/publicsuffix/public_suffix_list.dat` (package
   `publicsuffix`);
3. nothing: every top-level label is a public suffix (the list's `*` rule).

The list is read when a plugin first needs it, not at start-up.
"""

from __future__ import annotations

SYSTEM_LIST = "/usr/share/publicsuffix/public_suffix_list.dat"


class SuffixList:
    """Rules of a public suffix list, with the algorithm of publicsuffix.org."""

    def __init__(self, lines: list[str] | None = None) -> None:
        self.rules: set[str] = set()
        self.wildcards: set[str] = set()
        self.exceptions: set[str] = set()
        self.tlds: set[str] = set()
        for line in lines or ():
            self._add(line)

    def _add(self, line: str) -> None:
        words = line.split()
        if not words or words[0].startswith("//"):
            return
        rule = words[0].lower().strip(".")
        if not rule:
            return
        self.tlds.add(rule.rsplit(".", 1)[-1].lstrip("!"))
        if rule.startswith("!"):
            self.exceptions.add(rule[1:])
        elif rule.startswith("*."):
            self.wildcards.add(rule[2:])
        elif "*" not in rule:
            self.rules.add(rule)

    def public_suffix(self, domain: str) -> str:
        """The longest public suffix of `domain` (its last label when no rule matches)."""
        labels = domain.lower().strip(".").split(".")
        names = [_unicode(label) for label in labels]
        for i in range(len(labels)):
            candidate = ".".join(names[i:])
            if candidate in self.exceptions:
                return ".".join(labels[i + 1:])
            if candidate in self.rules:
                return ".".join(labels[i:])
            if i + 1 < len(labels) and ".".join(names[i + 1:]) in self.wildcards:
                return ".".join(labels[i:])
        return labels[-1]

    def registrable_domain(self, domain: str) -> str | None:
        """The public suffix plus one label; None when `domain` is itself a public suffix."""
        domain = domain.lower().strip(".")
        suffix = self.public_suffix(domain)
        if domain == suffix:
            return None
        labels = domain.split(".")
        return ".".join(labels[-(suffix.count(".") + 2):])

    def organizational_domain(self, domain: str) -> str:
        """RFC 7489 section 3.2: the registrable domain, or the domain itself."""
        return self.registrable_domain(domain) or domain.lower().strip(".")

    def is_tld(self, label: str) -> bool:
        return _unicode(label.lower()) in self.tlds


def _unicode(label: str) -> str:
    """IDN rules are stored as written (Unicode); punycode labels are compared in that form."""
    if not label.startswith("xn--"):
        return label
    try:
        return label.encode("ascii").decode("idna")
    except UnicodeError:
        return label


_loaded: dict[object, SuffixList] = {}


def for_session(qp: object) -> SuffixList:
    """The list for this session's config (read once per process)."""
    lines = list(qp.config("public_suffix_list") or [])  # type: ignore[attr-defined]
    if len(lines) == 1 and lines[0].strip().startswith("/"):
        return from_file(lines[0].strip())
    if lines:
        key = tuple(lines)
        if key not in _loaded:
            _loaded[key] = SuffixList(lines)
        return _loaded[key]
    return from_file(SYSTEM_LIST)


def from_file(path: str) -> SuffixList:
    if path not in _loaded:
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                _loaded[path] = SuffixList(handle.read().splitlines())
        except OSError:
            _loaded[path] = SuffixList()
    return _loaded[path]

