"""docs/migration.md accounts for every plugin and sample config file of the Perl qpsmtpd, and
for every old name and not-ported plugin the loader knows (issue 16).  The Perl names are
written out here (from the Perl qpsmtpd's plugins/ and config.sample/), not read from a checkout."""

from __future__ import annotations

import os

from qpsmtpd.aliases import ALIASES, NOT_PORTED
from qpsmtpd.testing import REPO_DIR

PERL_PLUGINS = """
auth/auth_checkpassword auth/auth_cvm_unix_local auth/auth_flat_file auth/auth_imap auth/auth_ldap_bind
auth/auth_vpopmail auth/auth_vpopmail_sql auth/auth_vpopmaild auth/authdeny badmailfrom badmailfromto badrcptto
bogus_bounce connection_time content_log count_unrecognized_commands dkim dmarc dns_whitelist_soft dnsbl
domainkeys dont_require_anglebrackets dspam earlytalker fcrdns greylisting headers helo help hosts_allow
http_config ident/geoip ident/p0f karma karma_tool loadcheck logging/adaptive logging/apache
logging/connection_id logging/devnull logging/file logging/syslog logging/transaction_id logging/warn loop
milter naughty noop_counter parse_addr_withhelo qmail_deliverable queue/exim-bsmtp queue/maildir
queue/postfix-queue queue/qmail-queue queue/smtp-forward quit_fortune random_error rcpt_map rcpt_ok
rcpt_regexp relay resolvable_fromhost rhsbl sender_permitted_from spamassassin stunnel tls tls_cert uribl
user_config virus/aveclient virus/bitdefender virus/clamav virus/clamdscan virus/hbedv virus/kavscanner
virus/klez_filter virus/sophie virus/uvscan whitelist
check_earlytalker check_relay check_norelay relay_only require_resolvable_fromhost check_badmailfrom
check_badmailfrom_patterns check_badmailfromto check_badrcptto check_badrcptto_patterns check_spamhelo
check_loop check_basicheaders check_bogus_bounce check_qmail_deliverable spf_deny saslauth authsql
""".split()
PERL_CONFIG_SAMPLES = """
IP add_geoip_headers badhelo badmailfrom badrcptto dkim/dkim_key_gen.sh dnsbl_allow dnsbl_zones flat_auth_pw
invalid_resolvable_fromhost karma_tlds log2sql logging loglevel norelayclients plugins public_suffix_list
rcpthosts relayclients rhsbl_zones size_threshold smtpauth-checkpassword tls_before_auth tls_ciphers
badrcptto_patterns badmailfrom_patterns require_resolvable_fromhost
""".split()


def migration_rows():
    with open(os.path.join(REPO_DIR, "docs", "migration.md"), encoding="utf-8") as handle:
        rows = [line for line in handle if line.startswith("| ")]
    return [row.split("|")[1] for row in rows]


def named_in(first_cells, name):
    return any(name in [word.strip(" ,()`").replace(" (older)", "") for word in cell.split(",")]
               or cell.strip().startswith(name + " ") for cell in first_cells)


def test_every_perl_plugin_and_sample_file_has_a_status():
    cells = migration_rows()
    missing = [name for name in PERL_PLUGINS + PERL_CONFIG_SAMPLES if not named_in(cells, name)]
    assert not missing, missing


def test_every_alias_and_not_ported_name_is_documented():
    text = open(os.path.join(REPO_DIR, "docs", "migration.md"), encoding="utf-8").read()
    for name in list(ALIASES) + list(NOT_PORTED):
        assert name in text, name
    for alias in ALIASES.values():
        assert os.path.exists(os.path.join(REPO_DIR, "plugins", alias.target + ".py")) or alias.target in (
            "virus/clamav", "qmail_deliverable"), alias.target


def test_same_and_ported_plugins_exist():
    text = open(os.path.join(REPO_DIR, "docs", "migration.md"), encoding="utf-8").read()
    plugin_section = text[text.index("## Status of every plugin"):text.index("## Status of every sample config file")]
    for line in plugin_section.splitlines():
        cells = [cell.strip() for cell in line.split("|")]
        if len(cells) > 3 and (cells[2].startswith("same") or cells[2].startswith("ported (")):
            name = cells[1]
            if "/" in name or name.replace("_", "").isalnum():
                assert os.path.exists(os.path.join(REPO_DIR, "plugins", name + ".py")), name
