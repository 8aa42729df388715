"""Body storage: memory up to size_threshold, then a 0600 spool file removed at the end."""

import os
import stat

from qpsmtpd.qp import Qpsmtpd
from qpsmtpd.testing import make_install


def make_qp(threshold):
    install = make_install({"size_threshold": str(threshold)})
    return Qpsmtpd(install)


def test_small_message_stays_in_memory_and_reads_back():
    qp = make_qp(10000)
    txn = qp.transaction
    txn.body_write(b"Subject: x\n")
    txn.set_body_start()
    txn.body_write(b"\nline one\nline two\n")
    assert txn.body_fh() is None
    txn.body_resetpos()
    assert txn.body_getline() == b"\n"
    assert txn.body_getline() == b"line one\n"
    assert txn.body_length() == len(b"\nline one\nline two\n")
    assert txn.data_size() == len(b"Subject: x\n\nline one\nline two\n")


def test_big_message_spools_to_a_private_file_removed_on_close():
    qp = make_qp(100)
    txn = qp.transaction
    txn.body_write(b"Subject: x\n")
    txn.set_body_start()
    txn.body_write(b"\n" + b"y" * 500 + b"\n")
    path = txn.body_filename()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.path.dirname(path) + "/" == qp.spool_dir()
    txn.body_resetpos()
    assert txn.body_read(1) == b"\n"
    assert txn.body_as_bytes() == b"\n" + b"y" * 500 + b"\n"
    qp.reset_transaction()
    assert not os.path.exists(path)


def test_temp_files_and_dirs_go_with_the_transaction():
    qp = make_qp(0)
    txn = qp.transaction
    path = qp.temp_file()
    txn.track_temp_file(path)
    open(path, "w").close()
    directory = qp.temp_dir()
    txn.track_temp_dir(directory)
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    qp.reset_transaction()
    assert not os.path.exists(path) and not os.path.exists(directory)


def test_iter_message_is_header_then_body():
    qp = make_qp(0)
    txn = qp.transaction
    txn.body_write(b"A: 1\n")
    txn.set_body_start()
    txn.body_write(b"\nbody\n")
    from qpsmtpd.header import Header
    txn.header = Header(["A: 1\n"])
    txn.header.add("Received", "x", 0)
    assert b"".join(txn.iter_message(block_size=2)) == b"Received: x\nA: 1\n\nbody\n"
    assert txn.message_size() == len(b"Received: x\nA: 1\n\nbody\n")


def test_body_replace_keeps_header_and_spools_big_bodies():
    """body_replace (milter body replacement): header kept, separator written, new body streamed."""
    import io

    from qpsmtpd.header import Header

    txn = make_qp(10).transaction
    txn.body_write(b"Subject: x\n")
    txn.set_body_start()
    txn.header = Header(["Subject: x\n"])
    txn.body_write(b"\nold body line\n" * 5)
    assert txn.body_fh() is not None  # spooled to disk
    txn.body_replace(io.BytesIO(b"new\nbody\n"))
    assert b"".join(txn.iter_message()) == b"Subject: x\n\nnew\nbody\n"
    assert txn.body_length() == len(b"\nnew\nbody\n")
    txn.close()
