"""# help — answers for the HELP command from files

Without this plugin the engine gives its built-in `214` answer.  With it:

* `HELP` — `214 Try 'HELP COMMAND' for getting help on COMMAND`;
* `HELP <command>` — the text of the command's help file, one `214` line
  per line; `214 No help available for SMTP command: <command>` when there
  is no file (or it is empty);
* a command name that is not a single word: `502 Invalid command name`.

## Arguments

In `key value` pairs:

* `help_dir DIR` — help for `HELP foo` is the file `DIR/foo`; without any
  argument the directory is `help/` of the installation;
* `not_implemented 1` — answer every HELP with `502 Not implemented.`;
* `COMMAND FILE` — any other pair names the help file of one command;
  a FILE without a slash is looked up in `help/` of the installation.

Relative paths are relative to the installation directory (where
`config/` is).  File names may only contain letters, digits, `_ . - /`.

## Example

    help help_dir /etc/qpsmtpd/help mail mail.txt
"""

import os
import re
from qpsmtpd.constants import OK, DONE, LOGERROR, LOGWARN
from qpsmtpd.args import Arguments, Option

arguments = Arguments(
    Option("help_dir", help="directory of the help files (default help/)"),
    Option("not_implemented", kind="bool", default=False, help="answer every HELP with 502"),
    free=True,  # `COMMAND FILE` pairs name the help file of one command
)

SAFE_PATH = re.compile(r"[\w.\-/]+")


def register(self, qp, *args):
    self.help_config = {}
    if not args:
        self.help_config["help_dir"] = self.install_path("help")
    for key, value in command_files(args):
        if not re.fullmatch(r"\w+", key):
            self.log(LOGWARN, f"Invalid argument for the 'help' plugin {key}")
            continue
        if not SAFE_PATH.fullmatch(value):
            self.log(LOGERROR, f"Invalid characters in filename for command {key}")
            continue
        path = self.install_path(value if "/" in value else os.path.join("help", value))
        if not os.path.exists(path):
            self.log(LOGWARN, f"No help file for command '{key}'")
            continue
        self.help_config[key.lower()] = path
    if self.opts["not_implemented"]:
        self.help_config["not_implemented"] = True
    if self.opts["help_dir"] is not None:
        if SAFE_PATH.fullmatch(self.opts["help_dir"]):
            self.help_config["help_dir"] = self.install_path(self.opts["help_dir"])
        else:
            self.log(LOGERROR, "Invalid characters in filename for command help_dir")


def command_files(args):
    """The `COMMAND FILE` pairs of the plugin line (the other keys are in self.opts)."""
    if len(args) % 2:
        return []
    pairs = [(args[index], args[index + 1]) for index in range(0, len(args), 2)]
    return [(key, value) for key, value in pairs if arguments.option(key) is None]


def install_path(self, path):
    return path if os.path.isabs(path) else os.path.join(self.qp.install_dir, path)


def hook_help(self, transaction, *args):
    not_implemented = self.help_config.get("not_implemented")
    if not_implemented and not_implemented != "0":
        self.qp.respond(502, "Not implemented.", esc="5.5.1")
        return DONE
    if not args:
        return OK, "Try 'HELP COMMAND' for getting help on COMMAND"
    command = args[0].lower()
    if not re.fullmatch(r"\w+", command):
        self.qp.respond(502, "Invalid command name", esc="5.5.1")
        return DONE
    text = None
    path = self.help_config.get(command)
    if path is None and "help_dir" in self.help_config:
        candidate = os.path.join(self.help_config["help_dir"], command)
        path = candidate if os.path.exists(candidate) else None
    if path is not None:
        text = self.read_helpfile(path, command)
    if not text:
        return OK, f"No help available for SMTP command: {command}"
    return OK, text.replace("\r", "").rstrip("\n").split("\n")


def read_helpfile(self, path, command):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError as error:
        self.log(LOGERROR, f"failed to open help file for {command}: {error}")
        return None
