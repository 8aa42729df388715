"""The resolver layer (qpsmtpd.dns) against a real dnsmasq and a silent server."""

import subprocess
import sys
import time

import pytest

from dns_testzone import dead_server, dns_server
from qpsmtpd import dns


@pytest.fixture(scope="module")
def server():
    with dns_server(["txt-record=two.test,\"v=spf1 a\",\" -all\""]) as line:
        yield dns.parse_server(line)


def test_parse_server():
    assert dns.parse_server("192.0.2.53") == ("192.0.2.53", 53)
    assert dns.parse_server("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert dns.parse_server("[::1]:5353") == ("::1", 5353)
    assert dns.parse_server("2001:db8::1") == ("2001:db8::1", 53)
    for bad in ("", "name.test", "1.2.3.4:x", "1.2.3.4:70000", "[::1]x"):
        assert dns.parse_server(bad) is None


def test_system_servers_ignore_search(tmp_path):
    conf = tmp_path / "resolv.conf"
    conf.write_text("search example.test\nnameserver 192.0.2.53\nnameserver ::1\noptions ndots:5\n")
    assert dns.system_servers(str(conf)) == [("192.0.2.53", 53), ("::1", 53)]


def test_reverse_names():
    assert dns.reverse_ip("192.0.2.1") == "1.2.0.192"
    assert dns.reverse_ip("::ffff:192.0.2.1") == "1.2.0.192"
    assert dns.reverse_ip("2001:db8::27") == "7.2.0.0." + "0." * 20 + "8.b.d.0.1.0.0.2"
    assert dns.ptr_name("2001:db8::25").endswith(".ip6.arpa")
    assert dns.reverse_ip("not-an-ip") is None


def test_record_types(server):
    resolver = dns.Resolver([server], 2)
    a, aaaa, mx, ptr, ptr6, txt, nx, nodata = resolver.many([
        ("mail.example.test", "A"), ("mail.example.test", "AAAA"), ("example.test", "MX"),
        (dns.ptr_name("192.0.2.26"), "PTR"), (dns.ptr_name("2001:db8::25"), "PTR"),
        ("27.2.0.192.bl.test", "TXT"), ("nothing.test", "A"), ("mail.example.test", "MX")])
    assert a.answers == ["192.0.2.25"] and aaaa.answers == ["2001:db8::25"]
    assert mx.answers == [(10, "mail.example.test")]
    assert ptr.answers == ["mx2-reverse.example.test"] and ptr6.answers == ["mail.example.test"]
    assert txt.answers == ["Listed in bl.test, see http://bl.test/?192.0.2.27"]
    assert nx.status == dns.NXDOMAIN and not nx.temporary and not nx
    assert nodata.status == dns.NODATA and not nodata.temporary


def test_txt_strings_joined(server):
    result = dns.Resolver([server], 2).lookup("two.test", "TXT")
    assert result.answers == ["v=spf1 a -all"] and result.raw_txt == [[b"v=spf1 a", b" -all"]]


def test_null_mx(server):
    assert dns.Resolver([server], 2).lookup("nullmx.test", "MX").answers == [(0, ".")]


def test_concurrent_and_cached(server):
    resolver = dns.Resolver([server], 2)
    names = [(f"{n}.2.0.192.bl.test", "A") for n in range(20, 30)]
    start = time.monotonic()
    results = resolver.many(names)
    assert time.monotonic() - start < 0.5
    assert [r.found for r in results].count(True) == 1
    assert resolver.queries_sent == 10
    resolver.many(names)
    assert resolver.queries_sent == 10


def test_invalid_names_not_sent(server):
    resolver = dns.Resolver([server], 2)
    for name in ("bad name.test", "a..b", "x" * 64 + ".test", "\r\n.test", ""):
        assert resolver.lookup(name).status == dns.INVALID
    assert resolver.queries_sent == 0


def test_silent_server_is_temporary_and_bounded():
    address, sock = dead_server()
    resolver = dns.Resolver([dns.parse_server(address)], 0.5)
    start = time.monotonic()
    results = resolver.many([(f"h{n}.test", "A") for n in range(6)])
    elapsed = time.monotonic() - start
    sock.close()
    assert all(r.temporary for r in results)
    assert 0.45 < elapsed < 0.8


def test_refused_port_is_temporary_at_once():
    address, sock = dead_server()
    sock.close()
    start = time.monotonic()
    result = dns.Resolver([dns.parse_server(address)], 5).lookup("x.test")
    assert result.temporary and "refused" in result.error.lower()
    assert time.monotonic() - start < 0.5


def test_falls_back_to_second_server(server):
    address, sock = dead_server()
    resolver = dns.Resolver([dns.parse_server(address), server], 1)
    result = resolver.lookup("mail.example.test")
    sock.close()
    assert result.answers == ["192.0.2.25"]


def test_budget_bounds_all_lookups():
    address, sock = dead_server()
    resolver = dns.Resolver([dns.parse_server(address)], 5)
    start = time.monotonic()
    first = resolver.lookup("a.test", deadline=time.monotonic() + 0.3)
    second = resolver.lookup("b.test", deadline=start + 0.3)
    sock.close()
    assert first.temporary and second.temporary
    assert time.monotonic() - start < 0.6


def test_error_rcode_is_temporary_and_fast():
    # `server=/zone/#` without upstream servers: dnsmasq answers REFUSED
    with dns_server(["server=/broken.test/#"]) as line:
        start = time.monotonic()
        result = dns.Resolver([dns.parse_server(line)], 2).lookup("x.broken.test")
    assert result.temporary and "REFUSED" in result.error
    assert time.monotonic() - start < 0.5


def test_dnspython_imported_lazily_and_lean():
    code = ("import sys; sys.path.insert(0, 'lib'); import qpsmtpd.dns as d; "
            "assert 'dns.message' not in sys.modules; d.load_dnspython(); "
            "assert 'dns.resolver' not in sys.modules and 'importlib.metadata' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=__file__.rsplit("/t/", 1)[0])
    assert out.stdout.strip() == "ok", out.stderr
