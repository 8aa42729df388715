"""The message header as an ordered list of raw fields (like Mail::Header).

Each field keeps the exact text the client sent, folding included, so a
header that passes through unchanged is byte-identical.  Field names are
matched case-insensitively.  Text is `str` decoded as UTF-8 with
`surrogateescape`, so any 8-bit byte survives a round trip through
`as_bytes()`.

    header.get("Subject")            # first value, folded lines kept, no final newline
    header.get_all("Received")       # every value
    header.add("X-Spam", "yes")      # appended; add(..., index=0) prepends
    header.replace("Subject", "new") # replaces the first, or adds
    header.delete("X-Spam")          # every field of that name
    header.as_string()               # "Name: value\n" lines, LF line ends
"""

from __future__ import annotations

_NAME_FORBIDDEN = frozenset(chr(c) for c in range(0x21)) | {"\x7f", ":"}


def field_name_end(line: str) -> int:
    """Offset just after the colon of `Name:` (spaces or tabs may precede it), or -1.

    Written without `re`, whose import would cost every connection ~5 ms.
    """
    colon = line.find(":")
    if colon <= 0:
        return -1
    name = line[:colon].rstrip(" \t")
    if not name or not _NAME_FORBIDDEN.isdisjoint(name):
        return -1
    return colon + 1


def decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def is_field_start(line: str) -> bool:
    """True when `line` opens a header field (`Name:` or the mbox `From ` line)."""
    return field_name_end(line) > 0 or line.startswith("From ")


class HeaderField:
    """One field: its name as written and the raw text after the colon."""

    __slots__ = ("name", "raw")

    def __init__(self, name: str, raw: str) -> None:
        self.name = name
        self.raw = raw  # everything after "Name:", including folds, ending in "\n"

    @property
    def value(self) -> str:
        text = self.raw[:-1] if self.raw.endswith("\n") else self.raw
        return text[1:] if text.startswith(" ") else text

    def line(self) -> str:
        return f"{self.name}:{self.raw}"


class Header:
    """An ordered, case-insensitive collection of header fields."""

    def __init__(self, lines: list[str] | None = None) -> None:
        self.fields: list[HeaderField] = []
        if lines:
            self.extract(lines)

    def extract(self, lines: list[str]) -> None:
        """Parse raw header lines (each ending in "\\n"); continuation lines fold into the field above."""
        for line in lines:
            if not line.endswith("\n"):
                line += "\n"
            if line[:1] in (" ", "\t") and self.fields:
                self.fields[-1].raw += line
                continue
            end = field_name_end(line)
            if end > 0:
                self.fields.append(HeaderField(line[:end - 1].rstrip(" \t"), line[end:]))
            elif line.startswith("From "):
                # an mbox separator line: qpsmtpd (MailFrom => COERCE) keeps it as Mail-From
                self.fields.append(HeaderField("Mail-From", " " + line[5:]))

    def _matching(self, name: str) -> list[HeaderField]:
        wanted = name.lower()
        return [field for field in self.fields if field.name.lower() == wanted]

    def get(self, name: str, index: int = 0) -> str | None:
        matches = self._matching(name)
        if index < len(matches):
            return matches[index].value
        return None

    def get_all(self, name: str) -> list[str]:
        return [field.value for field in self._matching(name)]

    def count(self, name: str) -> int:
        return len(self._matching(name))

    def tags(self) -> list[str]:
        """Field names in order of first appearance."""
        seen: dict[str, str] = {}
        for field in self.fields:
            seen.setdefault(field.name.lower(), field.name)
        return list(seen.values())

    @staticmethod
    def fold_value(value: str) -> str:
        """The raw text stored after "Name:" for `value` (a fold for every line break)."""
        return " " + _fold(value) + "\n"

    def add(self, name: str, value: str, index: int | None = None) -> None:
        """Add a field; `index=0` puts it on top. CR/LF in `value` only survive as folds."""
        field = HeaderField(name, self.fold_value(value))
        if index is None:
            self.fields.append(field)
        else:
            self.fields.insert(index, field)

    def replace(self, name: str, value: str, index: int = 0) -> None:
        matches = self._matching(name)
        if index < len(matches):
            matches[index].raw = self.fold_value(value)
        else:
            self.add(name, value)

    def delete(self, name: str, index: int | None = None) -> int:
        """Delete every field called `name`, or only its `index`-th occurrence."""
        matches = self._matching(name)
        if index is not None:
            matches = matches[index:index + 1]
        doomed = {id(field) for field in matches}
        self.fields = [field for field in self.fields if id(field) not in doomed]
        return len(matches)

    def as_string(self) -> str:
        return "".join(field.line() for field in self.fields)

    def as_bytes(self) -> bytes:
        return encode(self.as_string())

    def __len__(self) -> int:
        return len(self.fields)


def _fold(value: str) -> str:
    """Keep multi-line values as RFC 5322 folds; never let a bare CR/LF start a new field."""
    first, *rest = value.rstrip("\r\n").replace("\r", "\n").split("\n")
    folded = [first]
    for line in rest:
        if line:  # a run of line breaks counts as one
            folded.append(line if line[:1] in (" ", "\t") else " " + line)
    return "\n".join(folded)
