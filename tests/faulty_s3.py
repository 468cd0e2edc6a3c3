"""A fault-injecting HTTP proxy in front of an S3 server (moto), for storage-fault tests.

Every request is forwarded to the upstream server, except those picked for a fault: at a set
``rate`` (seeded), or by their 1-based request number in ``fail_requests``. A picked request is
answered with a real S3 error (``503 SlowDown`` or ``500 InternalError``, XML body as S3 sends it)
instead of reaching the server; with ``fail_after_forwarding`` it reaches the server first and
only its answer is replaced (the write happened, the client cannot know: the ambiguous case).

    with FaultyS3(moto_endpoint, rate=0.3) as proxy:
        os.environ["AWS_ENDPOINT_URL"] = proxy.endpoint
        ...
    proxy.injected  # how many faults were sent
"""

from __future__ import annotations

import http.client
import random
import threading
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

ERRORS = {
    "SlowDown": (503, "Please reduce your request rate."),
    "InternalError": (500, "We encountered an internal error. Please try again."),
}
# Hop-by-hop headers are the proxy's own business, never forwarded.
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te",
               "upgrade"}


def error_body(code: str, message: str, resource: str) -> bytes:
    """The XML body S3 sends with an error response."""
    request_id = uuid.uuid4().hex[:16].upper()
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{message}</Message><Resource>{resource}</Resource>"
            f"<RequestId>{request_id}</RequestId><HostId>faulty-s3</HostId></Error>").encode()


class FaultyS3:
    """The proxy: a threaded HTTP server on loopback; ``endpoint`` is its URL.

    ``rate``: probability that a request gets a fault; ``fail_requests``: request numbers
    (1-based, in arrival order) that get one whatever the rate; ``errors``: the S3 error codes
    to answer with, taken in turn; ``methods``: only requests with these HTTP methods are
    picked (None: all); ``limit``: the most faults to send (None: no limit). Counters:
    ``requests``, ``injected``, ``by_code``, ``by_method``.
    """

    def __init__(self, upstream: str, rate: float = 0.0, fail_requests=(), seed: int = 0,
                 errors=("SlowDown", "InternalError"), methods=None, limit: int | None = None,
                 fail_after_forwarding: bool = False):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self.rate = rate
        self.fail_requests = set(fail_requests)
        self.errors = tuple(errors)
        self.methods = None if methods is None else {m.upper() for m in methods}
        self.limit = limit
        self.fail_after_forwarding = fail_after_forwarding
        self.requests = 0
        self.injected = 0
        self.by_code: Counter = Counter()
        self.by_method: Counter = Counter()
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT`` of the proxy."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FaultyS3":
        """Start serving in a daemon thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "FaultyS3":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def pick_fault(self, method: str) -> str | None:
        """Count a request; the error code to answer it with, or None to let it through."""
        with self._lock:
            self.requests += 1
            if self.methods is not None and method not in self.methods:
                return None
            if self.limit is not None and self.injected >= self.limit:
                return None
            chosen = (self.requests in self.fail_requests
                      or (self.rate > 0 and self._random.random() < self.rate))
            if not chosen:
                return None
            code = self.errors[self.injected % len(self.errors)]
            self.injected += 1
            self.by_code[code] += 1
            self.by_method[method] += 1
            return code


def _handler_for(proxy: FaultyS3):
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.1 keeps the clients' pooled connections alive across requests.
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
            connection = http.client.HTTPConnection(*proxy.upstream, timeout=60)
            try:
                connection.putrequest(self.command, self.path, skip_host=True,
                                      skip_accept_encoding=True)
                for name, value in self.headers.items():
                    if name.lower() not in HOP_HEADERS and name.lower() != "content-length":
                        connection.putheader(name, value)
                connection.putheader("Content-Length", str(len(body)))
                connection.endheaders(body)
                response = connection.getresponse()
                payload = response.read()
                return response.status, response.getheaders(), payload
            finally:
                connection.close()

        def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers:
                if name.lower() not in HOP_HEADERS and name.lower() != "content-length":
                    self.send_header(name, value)
            length = next((v for n, v in headers if n.lower() == "content-length"), None)
            # A HEAD answer announces the length of the body it does not send.
            self.send_header("Content-Length",
                             length if self.command == "HEAD" and length else str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _fault(self, code: str) -> None:
            status, message = ERRORS[code]
            body = b"" if self.command == "HEAD" else error_body(code, message, self.path)
            self._send(status, [("Content-Type", "application/xml")], body)

        def _handle(self) -> None:
            body = self._read_body()
            code = proxy.pick_fault(self.command)
            if code is not None and not proxy.fail_after_forwarding:
                self._fault(code)
                return
            status, headers, payload = self._forward(body)
            if code is not None:
                self._fault(code)
                return
            self._send(status, headers, payload)

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

    return Handler
