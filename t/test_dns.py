"""The resolver layer (qpsmtpd.dns) against a real dnsmasq and a silent server."""

import contextlib
import socket
import struct
import subprocess
import sys
import threading
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


@pytest.mark.components
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


@pytest.mark.components
def test_cname_chain_followed():
    with dns_server(["cname=alias.example.test,mail.example.test"]) as line:
        resolver = dns.Resolver([dns.parse_server(line)], 2)
        a, cname = resolver.many([("alias.example.test", "A"), ("alias.example.test", "CNAME")])
    assert a.answers == ["192.0.2.25"] and cname.answers == ["mail.example.test"]


@pytest.mark.components
def test_txt_strings_joined(server):
    result = dns.Resolver([server], 2).lookup("two.test", "TXT")
    assert result.answers == ["v=spf1 a -all"] and result.raw_txt == [[b"v=spf1 a", b" -all"]]


@pytest.mark.components
def test_null_mx(server):
    assert dns.Resolver([server], 2).lookup("nullmx.test", "MX").answers == [(0, ".")]


@pytest.mark.components
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


@pytest.mark.components
def test_invalid_names_not_sent(server):
    resolver = dns.Resolver([server], 2)
    for name in ("bad name.test", "a..b", "x" * 64 + ".test", "\r\n.test", ""):
        assert resolver.lookup(name).status == dns.INVALID
    assert resolver.queries_sent == 0


@pytest.mark.components
def test_silent_server_is_temporary_and_bounded():
    address, sock = dead_server()
    resolver = dns.Resolver([dns.parse_server(address)], 0.5)
    start = time.monotonic()
    results = resolver.many([(f"h{n}.test", "A") for n in range(6)])
    elapsed = time.monotonic() - start
    sock.close()
    assert all(r.temporary for r in results)
    assert 0.45 < elapsed < 0.8


@pytest.mark.components
def test_refused_port_is_temporary_at_once():
    address, sock = dead_server()
    sock.close()
    start = time.monotonic()
    result = dns.Resolver([dns.parse_server(address)], 5).lookup("x.test")
    assert result.temporary and "refused" in result.error.lower()
    assert time.monotonic() - start < 0.5


@pytest.mark.components
def test_falls_back_to_second_server(server):
    address, sock = dead_server()
    resolver = dns.Resolver([dns.parse_server(address), server], 1)
    result = resolver.lookup("mail.example.test")
    sock.close()
    assert result.answers == ["192.0.2.25"]


@pytest.mark.components
def test_budget_bounds_all_lookups():
    address, sock = dead_server()
    resolver = dns.Resolver([dns.parse_server(address)], 5)
    start = time.monotonic()
    first = resolver.lookup("a.test", deadline=time.monotonic() + 0.3)
    second = resolver.lookup("b.test", deadline=start + 0.3)
    sock.close()
    assert first.temporary and second.temporary
    assert time.monotonic() - start < 0.6


@pytest.mark.components
def test_error_rcode_is_temporary_and_fast():
    # `server=/zone/#` without upstream servers: dnsmasq answers REFUSED
    with dns_server(["server=/broken.test/#"]) as line:
        start = time.monotonic()
        result = dns.Resolver([dns.parse_server(line)], 2).lookup("x.broken.test")
    assert result.temporary and "REFUSED" in result.error
    assert time.monotonic() - start < 0.5


LEAN_CHECK = """
import importlib.util, sys
sys.path.insert(0, "lib")
import qpsmtpd.dns as d

def plugin(name):
    spec = importlib.util.spec_from_file_location(name + "_plugin", f"plugins/{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

def loaded(names):
    return [name for name in names if name in sys.modules]

assert not loaded(["dns", "dns.name"])
d.load_dnspython()
plugin("sender_permitted_from").load_spf()
print(*loaded(["dns.message", "dns.rdata", "dns.resolver", "importlib.metadata", "hashlib", "ssl"]))
assert plugin("dkim").load_dkim().__name__ == "dkim"
print(*loaded(["dns.message", "dns.rdata", "dns.resolver", "importlib.metadata", "ssl"]))
"""


@pytest.mark.components
def test_dnspython_imported_lazily_and_lean():
    # of dnspython only dns.name: no dns.message (with hashlib, dns.rdata, dns.edns ...),
    # no dns.resolver (with importlib.metadata, ssl), not even through pyspf or dkimpy
    out = subprocess.run([sys.executable, "-c", LEAN_CHECK], capture_output=True, text=True,
                         cwd=__file__.rsplit("/t/", 1)[0])
    assert out.returncode == 0 and out.stdout == "\n\n", out.stdout + out.stderr


@pytest.mark.components
def test_truncated_answer_is_asked_again_over_tcp(monkeypatch):
    # 25 TXT records of 84 bytes do not fit the 1232 bytes we offer over UDP:
    # dnsmasq answers with TC set, and only the TCP answer has them all
    records = [f'txt-record=big.test,"r{n:02d}-{"x" * 80}"' for n in range(25)]
    tcp_asked = []
    real_tcp = dns.Resolver._tcp
    monkeypatch.setattr(dns.Resolver, "_tcp", lambda self, item: (tcp_asked.append(item.key), real_tcp(self, item))[1])
    with dns_server(records) as line:
        result = dns.Resolver([dns.parse_server(line)], 2).lookup("big.test", "TXT")
    assert tcp_asked == [("big.test", "TXT")]
    assert sorted(result.answers) == [f"r{n:02d}-{'x' * 80}" for n in range(25)]


# -- answers that must not be believed ------------------------------------------
# No real DNS server sends these on purpose, so a peer written here does: for
# each query it first sends the datagrams under test, then the true answer.

def _reply(query: bytes, *, answer_id=None, flags=0x8180, question=None, records=b"", count=1):
    query_id = int.from_bytes(query[:2], "big") if answer_id is None else answer_id
    question = query[12:-11] if question is None else question  # our query ends with an 11-byte OPT
    return struct.pack("!6H", query_id, flags, 1, count, 0, 0) + question + records


def _a_record(owner: bytes, address: bytes) -> bytes:
    return owner + struct.pack("!HHIH", 1, 1, 60, len(address)) + address


POINTER_TO_QUESTION = b"\xc0\x0c"
BAD_ANSWERS = {
    "garbage": lambda q: b"\x01\x02\x03",
    "another query id": lambda q: _reply(q, answer_id=int.from_bytes(q[:2], "big") ^ 1,
                                         records=_a_record(POINTER_TO_QUESTION, bytes([203, 0, 113, 1]))),
    "a query, not a response": lambda q: _reply(q, flags=0x0100, records=_a_record(POINTER_TO_QUESTION, bytes(4))),
    "another question": lambda q: _reply(q, question=b"\x05other\x04test\x00\x00\x01\x00\x01",
                                         records=_a_record(POINTER_TO_QUESTION, bytes([203, 0, 113, 2]))),
    "a pointer to itself": lambda q: _reply(q, records=_a_record(
        b"\xc0" + bytes([len(q) - 11]), bytes([203, 0, 113, 3]))),
    "a pointer forward": lambda q: _reply(q, records=_a_record(b"\xc0\xff", bytes([203, 0, 113, 4]))),
    "a record past the end": lambda q: _reply(q, records=_a_record(POINTER_TO_QUESTION, bytes(4))[:-2]),
    "an A record of 5 bytes": lambda q: _reply(q, records=_a_record(POINTER_TO_QUESTION, bytes(5))),
    "more records than sent": lambda q: _reply(q, count=2, records=_a_record(POINTER_TO_QUESTION, bytes(4))),
}


@contextlib.contextmanager
def lying_server(bad_answers):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)

    def serve():
        try:
            query, peer = sock.recvfrom(4096)
        except OSError:
            return
        for make in bad_answers:
            sock.sendto(make(query), peer)
        sock.sendto(_reply(query, records=_a_record(POINTER_TO_QUESTION, bytes([192, 0, 2, 99]))), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield ("127.0.0.1", sock.getsockname()[1])
    finally:
        thread.join(5)
        sock.close()


@pytest.mark.parametrize("kind", list(BAD_ANSWERS))
@pytest.mark.components
def test_false_or_malformed_answer_is_ignored(kind):
    with lying_server([BAD_ANSWERS[kind]]) as server:
        result = dns.Resolver([server], 2).lookup("host.test", "A")
    assert result.answers == ["192.0.2.99"], kind


@pytest.mark.components
def test_every_bad_answer_in_a_row_then_the_true_one():
    with lying_server(list(BAD_ANSWERS.values())) as server:
        result = dns.Resolver([server], 2).lookup("host.test", "A")
    assert result.answers == ["192.0.2.99"] and result.status == dns.OK


@pytest.mark.components
def test_unsupported_type_is_refused_without_a_query(server):
    resolver = dns.Resolver([server], 2)
    result = resolver.lookup("example.test", "SRV")
    assert result.status == dns.INVALID and "SRV" in result.error and resolver.queries_sent == 0
