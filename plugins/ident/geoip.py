"""# ident/geoip — where the client is: country, continent, city, AS number and distance from MaxMind .mmdb files

Looks the client's IP address up in MaxMind's GeoIP2 / GeoLite2 databases
(the `.mmdb` format) and keeps the answer in connection notes for other
plugins (karma, greylisting, reject by country ...), adds `X-GeoIP-*`
headers and can give karma -1 to far-away clients.

Needs the Python library maxminddb (Debian `python3-maxminddb`, pip
`maxminddb`); it is imported at connect time.  The plugin refuses to load
when it is missing.  The databases are not shipped: MaxMind's
`geoipupdate` (Debian package `geoipupdate`) fetches them.  The legacy
`.dat` files of the old GeoIP API are not read.

## Configuration

In `config/plugins`:

    ident/geoip [db_dir /usr/share/GeoIP] [distance 192.0.2.25] [too_far 6000] [add_headers true|false]

* `db_dir` — where the databases are (default `/usr/local/share/GeoIP`).
  The first of `GeoIP2-City.mmdb`, `GeoLite2-City.mmdb`,
  `GeoIP2-Country.mmdb`, `GeoLite2-Country.mmdb` found is used, and
  `GeoLite2-ASN.mmdb` / `GeoIP2-ISP.mmdb` for the AS number when present.
  With no country or city database the plugin logs an error and does
  nothing.
* `distance` — this server's public IP address: the distance to the client
  ("as the crow flies", the earth taken as a sphere of radius 6378 km) is
  computed from both addresses' locations (a City database is needed).
* `too_far` — karma -1 when the client is farther than this many km.
* `add_headers` — `false` turns the headers off (default on).

## Notes, log and headers

Connection notes (only those the database knows): `geoip_country` (ISO
code, `US`), `geoip_country_name` (English name), `geoip_continent`
(`NA`), `geoip_city` (English name), `geoip_asn` (a number),
`geoip_distance` (km, a whole number).  Loopback clients are not looked
up.  The log line lists what was found, e.g.

    (connect) ident::geoip: NA, US, Syracuse, 6341 km

or `skip, no results`.  With headers on, each message gets
`X-GeoIP-Country`, `X-GeoIP-Continent`, `X-GeoIP-City` and `X-GeoIP-ASN`
(from the notes that are set), replacing any the client sent.
"""

from __future__ import annotations

import math
import os

from qpsmtpd.args import Arguments, Option
from qpsmtpd.constants import DECLINED, LOGDEBUG, LOGERROR, LOGINFO, LOGNOTICE
from qpsmtpd.plugin import Plugin

DEFAULT_DB_DIR = "/usr/local/share/GeoIP"
LOCATION_DATABASES = ("GeoIP2-City.mmdb", "GeoLite2-City.mmdb", "GeoIP2-Country.mmdb", "GeoLite2-Country.mmdb")
ASN_DATABASES = ("GeoLite2-ASN.mmdb", "GeoIP2-ISP.mmdb")
EARTH_RADIUS_KM = 6378  # as the Perl plugin (Math::Trig with rho 6378)
HEADERS = (("X-GeoIP-Country", "geoip_country"), ("X-GeoIP-Continent", "geoip_continent"),
           ("X-GeoIP-City", "geoip_city"), ("X-GeoIP-ASN", "geoip_asn"))


class GeoIP(Plugin):
    arguments = Arguments(
        Option("db_dir", default=DEFAULT_DB_DIR, help="directory of the .mmdb files"),
        Option("distance", help="this server's public IP address, for geoip_distance"),
        Option("too_far", kind="float", minimum=0, help="karma -1 beyond this many km"),
        Option("add_headers", default="true", help="false: no X-GeoIP-* headers"),
    )

    requires = ("maxminddb",)  # checked when the plugin loads (qpsmtpd.optional)

    def register(self, qp, *args) -> None:
        db_dir = self.opts["db_dir"] or DEFAULT_DB_DIR
        if self.opts["distance"] and not _is_ip(self.opts["distance"]):
            self.log(LOGERROR, f"distance {self.opts['distance']!r} is not an IP address: no distances")
            self.opts["distance"] = None
        self.location_db = _first_file(db_dir, LOCATION_DATABASES)
        self.asn_db = _first_file(db_dir, ASN_DATABASES)
        if self.location_db is None:
            self.log(LOGERROR, f"no GeoIP2/GeoLite2 City or Country database in {db_dir}: plugin disabled")
            return
        self.register_hook("connect", "geoip_lookup")
        if "false" not in str(self.opts["add_headers"]).lower():
            self.register_hook("data_post", "add_headers")

    def check_config(self) -> list[str]:
        """Problems for --check-config."""
        problems = []
        if self.location_db is None:
            problems.append(f"no GeoIP2/GeoLite2 City or Country .mmdb in {self.opts['db_dir'] or DEFAULT_DB_DIR}")
        elif not os.access(self.location_db, os.R_OK):
            problems.append(f"{self.location_db} is not readable")
        if self.opts["distance"] is None and "distance" in self.args:
            problems.append("distance is not an IP address")
        return problems

    def geoip_lookup(self, transaction):
        ip = self.connection.remote_ip
        if _is_localhost(ip):
            return DECLINED
        import maxminddb
        try:
            with maxminddb.open_database(self.location_db) as reader:
                record = reader.get(ip)
                own = reader.get(self.opts["distance"]) if self.opts["distance"] and record else None
            asn = self.asn_for(maxminddb, ip)
        except (OSError, maxminddb.InvalidDatabaseError) as error:
            self.log(LOGERROR, f"skip, cannot read the GeoIP database: {error}")
            return DECLINED
        except ValueError as error:  # e.g. an IPv6 client and an IPv4-only database
            self.log(LOGINFO, f"skip, no results ({error})")
            return DECLINED
        if not record:
            self.log(LOGINFO, "skip, no results")
            return DECLINED
        self.store(record, asn, own)
        return DECLINED

    def asn_for(self, maxminddb, ip: str):
        if self.asn_db is None:
            return None
        with maxminddb.open_database(self.asn_db) as reader:
            found = reader.get(ip)
        return found.get("autonomous_system_number") if isinstance(found, dict) else None

    def store(self, record: dict, asn, own: dict | None) -> None:
        notes = self.connection.notes
        country = record.get("country") or record.get("registered_country") or {}
        values = {
            "geoip_country": country.get("iso_code"),
            "geoip_country_name": (country.get("names") or {}).get("en"),
            "geoip_continent": (record.get("continent") or {}).get("code"),
            "geoip_city": ((record.get("city") or {}).get("names") or {}).get("en"),
            "geoip_asn": asn or (record.get("traits") or {}).get("autonomous_system_number"),
        }
        for name, value in values.items():
            if value not in (None, ""):
                notes[name] = value
        distance = self.distance_to(record, own) if self.opts["distance"] else None
        if distance is not None:
            notes["geoip_distance"] = distance
        parts = [str(value) for value in (values["geoip_continent"], values["geoip_country"], values["geoip_city"])
                 if value and value != "--"]
        if distance is not None:
            parts.append(f"{distance} km")
            too_far = self.opts["too_far"]
            if too_far and distance > too_far:
                self.adjust_karma(-1)
        self.log(LOGINFO, ", ".join(parts) if parts else "no country, continent or city")

    def distance_to(self, record: dict, own: dict | None) -> int | None:
        if not own:
            self.log(LOGNOTICE, "could not get my lat/lon (no record for the distance IP)")
            return None
        mine, theirs = _lat_lon(own), _lat_lon(record)
        if mine is None:
            self.log(LOGNOTICE, "could not get my lat/lon")
            return None
        if theirs is None:
            self.log(LOGNOTICE, "could not get sender lat/lon")
            return None
        km = great_circle_km(*mine, *theirs)
        self.log(LOGDEBUG, f"distance {km} km")
        return km

    def add_headers(self, transaction):
        notes = self.connection.notes
        for header, note in HEADERS:
            value = notes.get(note)
            if value in (None, ""):
                continue
            transaction.header.delete(header)
            transaction.header.add(header, str(value), 0)
        return DECLINED


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> int:
    """Distance along the sphere (haversine), rounded to whole km."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    half_dphi = (phi2 - phi1) / 2
    half_dlambda = math.radians(lon2 - lon1) / 2
    a = math.sin(half_dphi) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(half_dlambda) ** 2
    return round(2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a))))


def _lat_lon(record: dict) -> tuple[float, float] | None:
    location = record.get("location") or {}
    lat, lon = location.get("latitude"), location.get("longitude")
    if lat is None or lon is None:
        return None
    return float(lat), float(lon)


def _first_file(directory: str, names: tuple[str, ...]) -> str | None:
    for name in names:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None


def _is_ip(text: str) -> bool:
    import socket
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, text)
            return True
        except OSError:
            continue
    return False


def _is_localhost(ip: str) -> bool:
    return ip.startswith("127.") or ip == "::1"
