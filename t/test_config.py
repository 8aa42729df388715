"""Config lookup as Qpsmtpd::Config: precedence, comments, $include, cache, defaults, cdb maps."""

import os
import subprocess

import pytest

from qpsmtpd.cdb import CdbReader, write_cdb
from qpsmtpd.config import Config


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    install = tmp_path / "install"
    (install / "config").mkdir(parents=True)
    override = tmp_path / "override"
    override.mkdir()
    qmail = tmp_path / "qmail"
    (qmail / "control").mkdir(parents=True)
    monkeypatch.setenv("QPSMTPD_CONFIG", str(override))
    monkeypatch.setenv("QMAIL", str(qmail))
    return install, override, qmail / "control"


def test_precedence_per_file(dirs):
    install, override, control = dirs
    (control / "me").write_text("from-qmail\n")
    (control / "rcpthosts").write_text("qmail.test\n")
    (install / "config" / "rcpthosts").write_text("install.test\n")
    (install / "config" / "databytes").write_text("100\n")
    (override / "databytes").write_text("200\n")
    conf = Config(str(install))
    assert conf.get("me") == ["from-qmail"]
    assert conf.get("rcpthosts") == ["install.test"]
    assert conf.get("databytes") == ["200"]


def test_comments_blank_lines_and_whitespace(dirs):
    install, override, _ = dirs
    (override / "badmailfrom").write_text("# comment\n\n   spam@x.test   \n\t# indented comment\nother@y.test\n")
    assert Config(str(install)).get("badmailfrom") == ["spam@x.test", "other@y.test"]


def test_defaults(dirs):
    install, _, _ = dirs
    conf = Config(str(install))
    assert conf.get("timeout") == ["1200"]
    assert conf.get("me") == [os.uname().nodename]
    assert conf.get("nonexistent") == []


def test_include_file_and_directory_sorted(dirs):
    install, override, _ = dirs
    (override / "extra").write_text("c.test\n")
    inc = override / "rcpt.d"
    inc.mkdir()
    (inc / "b").write_text("b2.test\n")
    (inc / "a").write_text("a1.test\n")
    (inc / ".hidden").write_text("hidden.test\n")
    (override / "rcpthosts").write_text(f"first.test\n$include extra\n$include {inc}\nlast.test\n")
    assert Config(str(install)).get("rcpthosts") == ["first.test", "c.test", "a1.test", "b2.test", "last.test"]


def test_include_loop_is_refused_and_logged(dirs):
    install, override, _ = dirs
    (override / "loop_a").write_text("a\n$include loop_b\n")
    (override / "loop_b").write_text("b\n$include loop_a\n")
    errors = []
    conf = Config(str(install), on_error=errors.append)
    assert conf.get("loop_a") == ["a", "b"]
    assert any("Circular $include" in error for error in errors)


def test_each_file_read_once_per_process(dirs):
    install, override, _ = dirs
    path = override / "rcpthosts"
    path.write_text("one.test\n")
    conf = Config(str(install))
    assert conf.get("rcpthosts") == ["one.test"]
    path.write_text("two.test\n")
    assert conf.get("rcpthosts") == ["one.test"]
    conf.clear_cache()
    assert conf.get("rcpthosts") == ["two.test"]


def test_cdb_map_roundtrip(dirs):
    install, override, _ = dirs
    write_cdb(str(override / "morercpthosts.cdb"), [(b"big.test", b""), (b"other.test", b"x")])
    more = Config(str(install)).get("morercpthosts", "map")
    assert "big.test" in more
    assert more.get("other.test") == b"x"
    assert "nope.test" not in more


def test_missing_cdb_map_is_empty(dirs):
    install, _, _ = dirs
    assert "x" not in Config(str(install)).get("morercpthosts", "map")


@pytest.mark.components
def test_cdb_written_by_tcprules_is_readable(tmp_path):
    """A cdb made by a real qmail-world tool (ucspi-tcp's tcprules) reads back."""
    rules = "127.0.0.1:allow,RELAYCLIENT=\"\"\n10.:deny\n:allow\n"
    subprocess.run(["tcprules", str(tmp_path / "r.cdb"), str(tmp_path / "r.tmp")], input=rules.encode(), check=True)
    reader = CdbReader(str(tmp_path / "r.cdb"))
    keys = set(reader.keys())
    assert b"127.0.0.1" in keys and b"10." in keys and b"" in keys
    assert reader.get("10.").startswith(b"D")
    assert b"RELAYCLIENT" in reader.get("127.0.0.1")
