"""user_config: per-user config directories, pattern substitution, unsafe addresses."""

from qpsmtpd.address import Address

from policy_support import load_plugin


def lookup(plugin, address, name):
    recipient = Address.parse(address)
    recipient.qp = plugin.qp
    return recipient.config(name)


def test_pattern_user_host_address(tmp_path):
    (tmp_path / "example.test" / "bob").mkdir(parents=True)
    (tmp_path / "example.test" / "bob" / "whitelistsenders").write_text("# mine\nfriend@x.test\n\n  other@y.test \n")
    plugin = load_plugin(f"user_config {tmp_path}/%h/%u")
    assert lookup(plugin, "<bob@example.test>", "whitelistsenders") == ["friend@x.test", "other@y.test"]
    (tmp_path / "bob@example.test").mkdir()
    (tmp_path / "bob@example.test" / "spam").write_text("yes\n")
    plugin = load_plugin(f"user_config {tmp_path}/%a")
    assert lookup(plugin, "<bob@example.test>", "spam") == ["yes"]


def test_missing_file_falls_back_to_global(tmp_path):
    plugin = load_plugin(f"user_config {tmp_path}/%u", whitelistsenders=["global@x.test"])
    assert lookup(plugin, "<nobody@example.test>", "whitelistsenders") == ["global@x.test"]


def test_unsafe_user_not_looked_up(tmp_path):
    (tmp_path / "secret").write_text("leak\n")
    (tmp_path / "u").mkdir()
    plugin = load_plugin(f"user_config {tmp_path}/u/%u")
    assert lookup(plugin, '<"../secret"@example.test>', "x") == []
    plugin = load_plugin(f"user_config {tmp_path}/%u")
    assert lookup(plugin, "<u@example.test>", "../secret") == []
