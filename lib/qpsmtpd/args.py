"""A typed parser for the arguments of a plugin line in `config/plugins`.

A plugin declares what it takes as a class attribute:

    from qpsmtpd.args import Arguments, Option

    class SpamAssassin(Plugin):
        arguments = Arguments(
            Option("reject", kind="int", choices=("userprefs",)),   # a number or `userprefs`
            Option("leave_old_headers", default="rename", choices=("drop", "rename", "keep")),
            Option("size_limit", kind="int", default=500_000, minimum=1),
            Option("spamd_socket"),
        )

Before `init`/`register` run, the engine parses the line's words against it
and puts the typed values in `self.opts` (every option present, with its
default when the line does not give it).  The words may be `key value`
pairs (qpsmtpd's usual form), `key=value` words (virus/clamav's form), or
both mixed; `positional=` names the leading words of plugins such as
`queue/maildir PATH`.

Problems are never silent: an unknown key or a bad value is logged once
when the plugin loads (LOGWARN) and makes `--check-config` fail, naming the
config line.  The plugin still loads with the default for a bad value —
real configs carry arguments the Perl plugins ignored — unless the option
says `strict=True` (a bad value would make the plugin unsafe): then the
plugin does not load.  Every plugin also takes `loglevel` (see
`Plugin.adjust_log_level`).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any, Iterable

_TRUE = frozenset(("1", "yes", "true", "on"))
_FALSE = frozenset(("0", "no", "false", "off"))
KINDS = frozenset(("str", "int", "float", "bool", "flag", "list"))


class ArgumentError(ValueError):
    """A word of a plugin line that does not fit the plugin's Arguments."""


class Option:
    """One argument a plugin takes.

    kind: "str", "int", "float", "bool" (1/0, yes/no, true/false, on/off),
    "flag" (a key with no value: present means True), or "list" (commas or
    repeated keys collect into a list).  `choices` are the words allowed
    (in any case: `Temp` gives `temp`); with kind int or float they are allowed beside numbers
    (`reject 12` or `reject userprefs`).  `minimum`/`maximum` bound numbers.
    `aliases` are older spellings of the key.  `strict=True`: a bad value
    stops the plugin from loading instead of falling back to the default.
    """

    __slots__ = ("name", "kind", "default", "choices", "minimum", "maximum", "aliases", "strict", "help")

    def __init__(self, name: str, kind: str = "str", default: Any = None, *,
                 choices: Iterable[str] | None = None, minimum: float | None = None,
                 maximum: float | None = None, aliases: Iterable[str] = (), strict: bool = False,
                 help: str = "") -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown option kind {kind!r}")
        self.name = name
        self.kind = kind
        self.default = [] if kind == "list" and default is None else default
        self.choices = tuple(choices) if choices is not None else None
        self.minimum = minimum
        self.maximum = maximum
        self.aliases = tuple(aliases)
        self.strict = strict
        self.help = help

    def convert(self, word: str) -> Any:
        """The typed value of `word`, or ArgumentError."""
        if self.choices is not None:
            if word in self.choices:
                return word
            lowered = word.lower()  # qpsmtpd's plugins matched most such words case-insensitively
            for choice in self.choices:
                if choice.lower() == lowered:
                    return choice
        kind = self.kind
        if kind == "bool":
            lowered = word.lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ArgumentError(f"{self.name}: {word!r} is not a yes/no value (1, 0, yes, no, on, off)")
        if kind in ("int", "float"):
            value = self._number(word)
            if self.minimum is not None and value < self.minimum:
                raise ArgumentError(f"{self.name}: {word} is below the minimum {self.minimum}")
            if self.maximum is not None and value > self.maximum:
                raise ArgumentError(f"{self.name}: {word} is above the maximum {self.maximum}")
            return value
        if self.choices is not None:
            raise ArgumentError(f"{self.name}: {word!r} is not one of {', '.join(self.choices)}")
        if kind == "list":
            return [part for part in word.split(",") if part]
        return word

    def _number(self, word: str) -> int | float:
        text = word.strip()
        try:
            if self.kind == "int":
                if not (text.isascii() and text.lstrip("+-").isdigit()):
                    raise ValueError(text)
                return int(text)
            if not text.isascii():
                raise ValueError(text)
            return float(text)
        except ValueError:
            allowed = f" or one of {', '.join(self.choices)}" if self.choices else ""
            raise ArgumentError(f"{self.name}: {word!r} is not a {'whole ' if self.kind == 'int' else ''}number{allowed}") from None


# Every plugin takes these (Plugin.adjust_log_level reads `loglevel`).
COMMON_OPTIONS = (Option("loglevel", help="raw level 0-7, or +N/-N to shift this plugin's lines"),)


class ParsedArguments:
    """What a plugin line said: typed values, and the problems found."""

    __slots__ = ("values", "warnings", "errors")

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.warnings: list[str] = []   # the plugin loads; logged and reported by --check-config
        self.errors: list[str] = []     # the plugin does not load


class Arguments:
    """The options of one plugin; `parse(words)` reads a config line's arguments."""

    def __init__(self, *options: Option, positional: Iterable[Option] = (), free: bool = False) -> None:
        self.positional = tuple(positional)
        self.options = tuple(options) + COMMON_OPTIONS
        self.free = free  # extra positional words are allowed (kept in self.args only)
        self._by_key: dict[str, Option] = {}
        for option in self.options:
            for key in (option.name, *option.aliases):
                self._by_key[key] = option

    def option(self, key: str) -> Option | None:
        return self._by_key.get(key)

    def names(self) -> list[str]:
        return [option.name for option in (*self.positional, *self.options)]

    def parse(self, words: Iterable[str]) -> ParsedArguments:
        result = ParsedArguments()
        for option in (*self.positional, *self.options):
            result.values[option.name] = list(option.default) if option.kind == "list" else option.default
        words = list(words)
        index = 0
        for option in self.positional:
            if index >= len(words) or self._is_key_word(words[index]):
                break
            self._set(result, option, words[index])
            index += 1
        while index < len(words):
            word = words[index]
            key, equals, value = word.partition("=")
            option = self._by_key.get(key) if equals else None
            if option is not None and option.kind != "flag":
                self._set(result, option, value)
                index += 1
                continue
            option = self._by_key.get(word)
            if option is None:
                if not self.free:
                    result.warnings.append(f"unknown argument {word!r} (known: {', '.join(self.names())})")
                index += 2 if index + 1 < len(words) and not self._is_key_word(words[index + 1]) and not self.free else 1
                continue
            if option.kind == "flag":
                result.values[option.name] = True
                index += 1
                continue
            if index + 1 >= len(words):
                self._problem(result, option, f"{word}: a value is missing")
                index += 1
                continue
            self._set(result, option, words[index + 1])
            index += 2
        return result

    def _is_key_word(self, word: str) -> bool:
        return word in self._by_key or word.partition("=")[0] in self._by_key and "=" in word

    def _set(self, result: ParsedArguments, option: Option, word: str) -> None:
        try:
            value = option.convert(word)
        except ArgumentError as error:
            self._problem(result, option, str(error))
            return
        if option.kind == "list":
            result.values[option.name] = [*result.values[option.name], *value]
        else:
            result.values[option.name] = value

    @staticmethod
    def _problem(result: ParsedArguments, option: Option, text: str) -> None:
        if option.strict:
            result.errors.append(text)
        else:
            result.warnings.append(f"{text}; using the default ({option.default!r})")
