"""ident/geoip with the real maxminddb reader on small GeoLite2-format databases
that the test builds itself with the `mmdb-writer` package (PyPI; the records
follow MaxMind's GeoLite2 City, Country and ASN layouts)."""

from __future__ import annotations

import json
import os

import pytest
from qpsmtpd.testing import REPO_DIR, run_session

pytestmark = pytest.mark.components

SYRACUSE = "24.24.24.24"        # the Perl plugin's test address
LONDON = "81.2.69.160"
BERLIN_SERVER = "198.51.100.25"  # this server, for `distance`
NOWHERE = "203.0.113.9"          # not in the databases


def city(iso, country, continent, name, lat, lon):
    return {"city": {"names": {"en": name}}, "continent": {"code": continent, "names": {"en": "x"}},
            "country": {"iso_code": iso, "names": {"en": country}},
            "location": {"latitude": lat, "longitude": lon}}


def write_db(path, kind, records):
    from mmdb_writer import MmdbF64, MMDBWriter
    from netaddr import IPSet
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type=kind, languages=["en"],
                        description="qpsmtpd test database")
    for network, record in records.items():
        if "location" in record:
            record = {**record, "location": {key: MmdbF64(value) for key, value in record["location"].items()}}
        writer.insert_network(IPSet([network]), record)
    writer.to_db_file(str(path))


@pytest.fixture(scope="module")
def db_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("geoip")
    write_db(directory / "GeoLite2-City.mmdb", "GeoLite2-City", {
        "24.24.24.0/24": city("US", "United States", "NA", "Syracuse", 43.0481, -76.1474),
        "81.2.69.0/24": city("GB", "United Kingdom", "EU", "London", 51.5142, -0.0931),
        "198.51.100.0/24": city("DE", "Germany", "EU", "Berlin", 52.5200, 13.4050),
    })
    write_db(directory / "GeoLite2-ASN.mmdb", "GeoLite2-ASN", {
        "24.24.0.0/16": {"autonomous_system_number": 11351, "autonomous_system_organization": "Example Cable"}})
    return directory


@pytest.fixture(scope="module")
def country_only_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("geoip-country")
    write_db(directory / "GeoLite2-Country.mmdb", "GeoLite2-Country", {
        "81.2.69.0/24": {"continent": {"code": "EU"}, "country": {"iso_code": "GB", "names": {"en": "United Kingdom"}}}})
    return directory


NOTES_PROBE = """
import json
def hook_disconnect(self, transaction):
    with open(self.args[0], "w") as handle:
        json.dump({k: v for k, v in self.connection.notes.items() if k.startswith("geoip") or k == "karma"}, handle)
"""


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    directory = tmp_path_factory.mktemp("probe")
    (directory / "notes_probe.py").write_text(NOTES_PROBE)
    return directory


def session(probe, plugin_line, ip):
    lines = ["HELO client.test", "MAIL FROM:<a@example.org>", "RCPT TO:<x@example.test>", "DATA",
             "X-GeoIP-Country: ZZ", "Subject: hi", "", "body", ".", "QUIT"]
    result = run_session(lines, config={"plugins": [plugin_line, "rcpt_ok", f"notes_probe {probe}/notes.json"],
                                        "rcpthosts": ["example.test"], "loglevel": "7"},
                         plugin_dirs=[str(probe), os.path.join(REPO_DIR, "plugins")],
                         connection={"remote_ip": ip}, capture_queue=True)
    result.notes = json.loads((probe / "notes.json").read_text())
    return result


def test_city_notes_asn_log_and_headers(db_dir, probe):
    result = session(probe, f"ident/geoip db_dir {db_dir}", SYRACUSE)
    assert result.notes == {"geoip_country": "US", "geoip_country_name": "United States", "geoip_continent": "NA",
                            "geoip_city": "Syracuse", "geoip_asn": 11351}
    assert any(line.endswith("ident::geoip: NA, US, Syracuse") for line in result.log)
    header = result.queued[0].message.decode().split("\n\n")[0]
    assert header.startswith("X-GeoIP-ASN: 11351\nX-GeoIP-City: Syracuse\nX-GeoIP-Continent: NA\n"
                             "X-GeoIP-Country: US\n")
    assert "ZZ" not in header


def test_distance_and_too_far(db_dir, probe):
    result = session(probe, f"ident/geoip db_dir {db_dir} distance {BERLIN_SERVER} too_far 5000", SYRACUSE)
    assert 6300 <= result.notes["geoip_distance"] <= 6400   # Berlin - Syracuse, about 6340 km
    assert result.notes["karma"] == -1
    assert any(line.endswith(f"NA, US, Syracuse, {result.notes['geoip_distance']} km") for line in result.log)
    near = session(probe, f"ident/geoip db_dir {db_dir} distance {BERLIN_SERVER} too_far 5000", LONDON)
    assert 900 <= near.notes["geoip_distance"] <= 950       # Berlin - London, about 930 km
    assert "karma" not in near.notes


def test_unknown_and_local_addresses(db_dir, probe):
    result = session(probe, f"ident/geoip db_dir {db_dir}", NOWHERE)
    assert result.notes == {}
    assert any("skip, no results" in line for line in result.log)
    assert session(probe, f"ident/geoip db_dir {db_dir}", "127.0.0.1").notes == {}
    assert session(probe, f"ident/geoip db_dir {db_dir}", "2001:db8::25").notes == {}


def test_country_database_and_headers_off(country_only_dir, probe):
    result = session(probe, f"ident/geoip db_dir {country_only_dir} add_headers false", LONDON)
    assert result.notes == {"geoip_country": "GB", "geoip_country_name": "United Kingdom", "geoip_continent": "EU"}
    assert "X-GeoIP-Country: ZZ" in result.queued[0].message.decode()


def test_no_database_disables_the_plugin(tmp_path, probe):
    result = session(probe, f"ident/geoip db_dir {tmp_path}", SYRACUSE)
    assert result.codes() == [220, 250, 250, 250, 354, 250, 221]
    assert any("no GeoIP2/GeoLite2 City or Country database" in line for line in result.log)


def test_corrupt_database_does_not_stop_mail(tmp_path, probe):
    (tmp_path / "GeoLite2-City.mmdb").write_bytes(b"not a maxmind database" * 10)
    result = session(probe, f"ident/geoip db_dir {tmp_path}", SYRACUSE)
    assert result.codes() == [220, 250, 250, 250, 354, 250, 221]
    assert any("cannot read the GeoIP database" in line for line in result.log)
