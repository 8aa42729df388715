"""http_config: config items from a local http.server, fallback to files, caching."""

import http.server
import threading
from typing import ClassVar

import pytest

from policy_support import MAIL, replies, session


class Handler(http.server.BaseHTTPRequestHandler):
    requests: ClassVar[list[str]] = []
    pages: ClassVar[dict[str, str]] = {"/cfg/badmailfrom": "# from http\na@b.test\n", "/cfg/rcpthosts": "", "/alt/rcpthosts": "http.test\n"}

    def do_GET(self):
        type(self).requests.append(self.path)
        body = self.pages.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    Handler.requests = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_items_from_http_in_url_order(server):
    plugins = [f"http_config {server}/cfg/ {server}/alt/", "badmailfrom"]
    got = replies(session(plugins, MAIL + ["RCPT TO:<x@http.test>", "MAIL FROM:<c@d.test>", "RCPT TO:<x@http.test>"],
                          rcpthosts=["files.test"]))
    assert got[2] == "550 Your envelope sender is in my badmailfrom list"
    assert got[4].startswith("250") and got[5].startswith("250")
    assert Handler.requests.count("/cfg/badmailfrom") == 1
    assert Handler.requests.count("/alt/rcpthosts") == 1


def test_files_used_when_server_has_nothing(server):
    got = replies(session([f"http_config {server}/none/", "badmailfrom"], MAIL + ["RCPT TO:<x@files.test>"],
                          rcpthosts=["files.test"], badmailfrom=["other@x.test"]))
    assert got[2].startswith("250") and got[3].startswith("250")


def test_unreachable_server_falls_back():
    got = replies(session(["http_config http://127.0.0.1:9/", "badmailfrom"], MAIL, badmailfrom=["a@b.test"]))
    assert got[2].startswith("550")


def test_non_http_urls_ignored():
    result = session(["http_config file:///etc/", "badmailfrom"], MAIL)
    assert replies(result)[2].startswith("250")
    assert any("ignoring non-HTTP URL" in line for line in result.log)
