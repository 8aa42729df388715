"""help: help files, help_dir, not_implemented, invalid names; core's answer without the plugin."""

from policy_support import replies, session


def helps(plugin, *commands, files=None):
    config = dict(files or {})
    return replies(session([plugin] if plugin else [], list(commands), **config))[1:-1]


def test_core_answer_without_plugin():
    got = helps(None, "HELP")
    assert got[0].startswith("214 This is qpsmtpd")


def test_default_dir_is_install_help(tmp_path):
    import os
    from qpsmtpd.testing import make_install
    install = make_install({"plugins": ["help", "rcpt_ok"]})
    os.mkdir(os.path.join(install, "help"))
    with open(os.path.join(install, "help", "mail"), "w") as handle:
        handle.write("MAIL FROM:<address>\nstarts a message\n")
    from qpsmtpd.reader import SmtpIO
    from qpsmtpd.smtp import SMTP
    from qpsmtpd.testing import ScriptedTransport
    transport = ScriptedTransport(b"HELP\r\nHELP MAIL\r\nHELP rcpt\r\nHELP ../x\r\nQUIT\r\n")
    smtp = SMTP(install, SmtpIO(transport))
    smtp.log_sink = lambda line: None
    smtp.connection.start(remote_ip="192.0.2.1", remote_info="[192.0.2.1]")
    smtp.load_plugins()
    smtp.run()
    lines = transport.output.decode().split("\r\n")
    assert lines[1:6] == ["214 Try 'HELP COMMAND' for getting help on COMMAND",
                          "214-MAIL FROM:<address>", "214 starts a message",
                          "214 No help available for SMTP command: rcpt",
                          "502 Invalid command name"]


def test_help_dir_and_command_file(tmp_path):
    (tmp_path / "rcpt").write_text("RCPT help\n")
    (tmp_path / "special.txt").write_text("special DATA help\n")
    (tmp_path / "empty").write_text("")
    plugin = f"help help_dir {tmp_path} data {tmp_path}/special.txt"
    assert helps(plugin, "HELP RCPT", "HELP data", "HELP empty", "HELP nope") == [
        "214 RCPT help", "214 special DATA help", "214 No help available for SMTP command: empty",
        "214 No help available for SMTP command: nope"]


def test_not_implemented():
    assert helps("help not_implemented 1", "HELP", "HELP MAIL") == ["502 Not implemented."] * 2


def test_unsafe_file_name_ignored():
    result = session(["help data ../etc;passwd"], ["HELP data"])
    assert replies(result)[1] == "214 No help available for SMTP command: data"
    assert any("Invalid characters" in line for line in result.log)
