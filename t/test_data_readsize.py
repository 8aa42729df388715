"""DATA gives the same message whatever the read sizes, and costs linear time.

Each message is replayed through the real engine in-process with the
client's bytes cut into reads of 1, 2, 3, 5, 7, 64, 4096, 65536 and 1 MiB
bytes: the replies and the queued bytes must be identical.  The messages
are the cases where a split used to matter: header lines longer than the
64 KiB body flush (field or not), lines near `max_header_size`, folding,
dot-stuffing, bare CR and LF, the terminator split across reads.
"""

import time

import pytest

from qpsmtpd.testing import run_session

CONFIG = {"plugins": ["rcpt_ok"], "rcpthosts": ["example.test"], "me": ["mx.example.test"]}
ENVELOPE = b"HELO client.test\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n"
READ_SIZES = (1, 2, 3, 5, 7, 64, 4096, 65536, 1 << 20)
BIG_READS = (997, 4096, 65536, 1 << 20)  # for messages too big to replay byte by byte quickly


def session_bytes(message: bytes) -> bytes:
    return ENVELOPE + message + b"\r\n.\r\nQUIT\r\n"


def replay(message: bytes, chunk: int, config=None) -> tuple[list[int], list[bytes]]:
    result = run_session(session_bytes(message), config={**CONFIG, **(config or {})},
                         capture_queue=True, chunk_size=chunk)
    return result.codes(), [queued.message for queued in result.queued]


def without_received(message: bytes) -> bytes:
    return message.split(b"\n", 2)[2] if message.startswith(b"Received:") else message


def assert_invariant(message: bytes, sizes=READ_SIZES, config=None):
    outcomes = {}
    for chunk in sizes:
        codes, queued = replay(message, chunk, config)
        outcomes[chunk] = (codes, [without_received(m.split(b"\n", 1)[1]) if m.startswith(b"Authentication")
                                   else without_received(m) for m in queued])
    first = outcomes[sizes[0]]
    for chunk, outcome in outcomes.items():
        assert outcome == first, f"read size {chunk} gave a different result than {sizes[0]}"
    return first


def normalise(message: bytes) -> bytes:
    """The stored message minus the lines the engine adds on top (Received, Authentication-Results)."""
    lines = message.split(b"\n")
    while lines and (lines[0].startswith((b"Received:", b"Authentication-Results:", b" ", b"\t"))):
        lines.pop(0)
    return b"\n".join(lines)


SMALL_CASES = {
    "plain": b"Subject: hi\r\n\r\nbody\r\n",
    "folded": b"Subject: a\r\n b\r\n\tc\r\nX: y\r\n\r\nbody",
    "dots": b"Subject: d\r\n\r\n..leading\r\n.\r\n\r\n...\r\nx",
    "no blank line": b"Subject: x\r\nnot a header line\r\nX-Not: header\r\n",
    "bare cr": b"Subject: a\rb\r\n\r\nbody\rmore\r\n",
    "dot after bare lf": b"Subject: a\r\n\r\nline\n.\nafter\r\n",  # a bare LF dot is refused (421)
    "crlf dot split": b"Subject: a\r\n\r\n" + b"x" * 70 + b"\r\n..\r\n",
    "from line": b"From someone Mon Jan  1\r\nSubject: a\r\n\r\nb",
}


@pytest.mark.parametrize("name", sorted(SMALL_CASES))
def test_small_messages_at_every_read_size(name):
    codes, queued = assert_invariant(SMALL_CASES[name])
    assert codes[0] == 220


def test_long_non_field_line_in_the_header_position_goes_to_the_body_for_any_read_size():
    """A 70 KiB line that is not a header field, where the header is: the body begins there
    (it used to be kept as a header field, promoting the lines after it, when read in pieces)."""
    message = b"Subject: long\r\n" + b"y" * 70_000 + b"\r\nX-Promoted: no\r\n\r\nend"
    codes, queued = assert_invariant(message, (7, 1000) + BIG_READS)
    assert codes[-2] == 250
    stored = normalise(queued[0])
    assert stored.startswith(b"Subject: long\n\n" + b"y" * 70_000 + b"\nX-Promoted: no\n")


def test_long_header_field_is_kept_whole_for_any_read_size():
    message = b"X-Long: " + b"z" * 70_000 + b"\r\nSubject: s\r\n\r\nbody"
    codes, queued = assert_invariant(message, (7, 1000) + BIG_READS)
    assert codes[-2] == 250
    assert normalise(queued[0]) == b"X-Long: " + b"z" * 70_000 + b"\nSubject: s\n\nbody\n"


@pytest.mark.parametrize("extra", [-3, -2, -1, 0, 1, 2, 3])
def test_header_limit_boundary_is_independent_of_read_size(extra):
    limit = 4096
    first = b"Subject: s\r\n"
    filler = b"X: " + b"w" * (limit - len(first) + extra - 5) + b"\r\n"  # stored with LF: -1
    message = first + filler + b"\r\nbody"
    codes, _queued = assert_invariant(message, (1, 3, 64, 1000, 4096), {"max_header_size": ["4096"]})
    size = len(first) - 1 + len(filler) - 1
    assert codes[-2] == (250 if size <= limit else 552)


def test_header_size_zero_is_bounded():
    """`max_header_size 0` used to mean unlimited (one message took 200 MB); now the 1 MiB default."""
    message = b"X: " + b"h" * (1_100_000) + b"\r\n\r\nbody"
    codes, queued = replay(message, 65536, {"max_header_size": ["0"]})
    assert codes[-2] == 552 and not queued


def test_terminator_split_at_every_offset():
    message = b"Subject: t\r\n\r\n" + b"a" * 100
    for chunk in (1, 2, 3, 4, 5, 6):
        codes, queued = replay(message, chunk)
        assert codes == [220, 250, 250, 250, 354, 250, 221]
        assert normalise(queued[0]) == b"Subject: t\n\n" + b"a" * 100 + b"\n"


def cpu_time(message: bytes, chunk: int) -> tuple[float, list[int], list[bytes]]:
    started = time.process_time()
    codes, queued = replay(message, chunk)
    return time.process_time() - started, codes, queued


def test_folding_is_linear():
    """260,000 continuation lines under the 1 MiB header limit cost 17 s of CPU (raw += line):
    they must cost about what as many one-line fields cost."""
    folded = b"X-Fold: a\r\n" + b" b\r\n" * 260_000 + b"\r\nbody"
    fields = b"X-Fold: a\r\n" + b"X:\r\n" * 260_000 + b"\r\nbody"
    spent, codes, queued = cpu_time(folded, 1 << 20)
    baseline, _codes, _queued = cpu_time(fields, 1 << 20)
    assert codes[-2] == 250 and normalise(queued[0]).count(b"\n b") == 260_000
    assert spent < 2 * baseline + 0.2, f"folding took {spent:.2f} s of CPU, as many fields {baseline:.2f} s"


def test_one_byte_reads_are_linear():
    """A 200 KiB line read one byte at a time costs what 200 KiB of short lines cost
    (the line buffer was copied on every read)."""
    long_line = b"Subject: s\r\n\r\n" + b"q" * 200_000 + b"\r\nend"
    short_lines = b"Subject: s\r\n\r\n" + (b"q" * 98 + b"\r\n") * 2_000 + b"end"
    spent, codes, queued = cpu_time(long_line, 1)
    baseline, _codes, _queued = cpu_time(short_lines, 1)
    assert codes[-2] == 250 and b"q" * 200_000 in queued[0]
    assert spent < 2 * baseline + 0.2, f"one long line took {spent:.2f} s of CPU, short lines {baseline:.2f} s"
