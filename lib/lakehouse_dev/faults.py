"""A fault-injecting HTTP proxy for S3, put in front of the moto server.

A run on S3 must survive a flaky object store: it either completes through its clients' retries
(Hadoop S3A, boto3) or fails cleanly, never half-written. moto answers every request perfectly, so
this proxy sits between the clients and moto and, at a configured rate, misbehaves the way S3 does:

- "503": answers 503 SlowDown (S3's throttling) without forwarding;
- "500": answers 500 InternalError without forwarding;
- "drop": closes the connection with no answer at all, without forwarding;
- "slow": waits `slow_seconds`, then forwards.

Which request gets which fault comes from one seeded random sequence drawn in request order, so a
client that sends its requests one at a time meets the same faults on every run. Every request is
read in full before it is answered, as S3 does, so a client never sees a reset while still sending.

    with FaultProxy(moto_url, rate=0.2, seed=7) as proxy:
        s3 = boto3.client("s3", endpoint_url=proxy.url, ...)  # or S3A's fs.s3a.endpoint
        ...
        proxy.heal()  # from here on every request passes
    print(proxy.summary())

It binds 127.0.0.1 only and forwards only to `target`, a plain-http URL.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import random
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

KINDS = ("503", "500", "drop", "slow")
# The S3 error each answering kind sends: status, code, message (as S3 words them).
ERRORS = {
    "503": (503, "SlowDown", "Please reduce your request rate."),
    "500": (500, "InternalError", "We encountered an internal error. Please try again."),
}
# Headers never relayed as they came: those about one connection rather than the message (RFC 9110
# section 7.6.1), `Expect` (this side already answered the client's 100-continue, and has the whole
# body), and the framing ones (each side states its own length, bodies go on de-chunked).
_NOT_RELAYED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
        "content-length",
    }
)
_BLOCK = 1 << 16
_MAX_LINE = 65_536
_UPSTREAM_TIMEOUT = 120.0


class FaultProxy:
    """An HTTP proxy on a free loopback port that forwards every request to `target` except those
    it picks, at `rate`, for a fault of one of `kinds` (only on `only_methods`, if given).

    `rate` can be changed while it runs (`heal()`, `fail_all()`). The counters (`requests`,
    `forwarded`, `faults` by kind, `upstream_errors`) are updated under a lock; read them at rest,
    or all at once with `summary()`."""

    def __init__(
        self,
        target: str,
        rate: float = 0.0,
        seed: int = 0,
        kinds: Sequence[str] = KINDS,
        slow_seconds: float = 2.0,
        only_methods: Sequence[str] | None = None,
        fail_from: int | None = None,
    ) -> None:
        parts = urlsplit(target)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the target must be a plain http URL, not {target!r}")
        unknown = sorted(set(kinds) - set(KINDS))
        if unknown or not kinds:
            raise ValueError(f"the kinds must be some of {KINDS}, not {tuple(kinds)}")
        self.target = target
        self._host = parts.hostname
        self._port = parts.port or 80
        self._prefix = parts.path.rstrip("/")
        self.seed = seed
        self.kinds = tuple(kinds)
        self.slow_seconds = slow_seconds
        self.only_methods = (
            None if only_methods is None else frozenset(m.upper() for m in only_methods)
        )
        # From the `fail_from`-th decision on, every request gets a fault (an outage that starts
        # in the middle of a run, at a reproducible point).
        self.fail_from = fail_from
        self._decisions = 0
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._rate = 0.0
        self.rate = rate
        self.requests = 0
        self.forwarded = 0
        self.upstream_errors = 0
        self.faults: Counter[str] = Counter()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        # The client connections open now, closed by `stop()`: a kept-alive connection would
        # otherwise go on being served after the proxy stopped.
        self._connections: set[socket.socket] = set()

    @property
    def rate(self) -> float:
        return self._rate

    @rate.setter
    def rate(self, rate: float) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"the rate is a probability, between 0 and 1, not {rate}")
        with self._lock:
            self._rate = rate

    def heal(self) -> None:
        """Let every request through from now on (an outage of `fail_from` ends too)."""
        with self._lock:
            self.fail_from = None
        self.rate = 0.0

    def fail_all(self) -> None:
        """Give every request (of `only_methods`, if given) a fault from now on."""
        self.rate = 1.0

    def decide(self, method: str) -> str | None:
        """The fault for the next request, a kind or None to forward it as it is. Requests of a
        method outside `only_methods` take nothing from the random sequence, so the faults the
        others meet do not depend on how many of those came in between."""
        with self._lock:
            if self.only_methods is not None and method.upper() not in self.only_methods:
                return None
            self._decisions += 1
            if self.fail_from is not None and self._decisions >= self.fail_from:
                self._rate = 1.0
            if self._random.random() >= self._rate:
                return None
            return self._random.choice(self.kinds)

    @property
    def url(self) -> str:
        """The proxy's base URL, the endpoint to give the clients."""
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("the proxy is already started")
        server = _Server(("127.0.0.1", 0), _Handler)
        server.proxy = self
        self._server = server
        # A short poll interval, so `stop()` returns at once.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
            name=f"fault-proxy-{server.server_address[1]}",
        )  # fmt: skip
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, and close the connections still open (their threads then end)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            open_connections = list(self._connections)
        for connection in open_connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {
                "target": self.target,
                "rate": self._rate,
                "seed": self.seed,
                "kinds": list(self.kinds),
                "requests": self.requests,
                "forwarded": self.forwarded,
                "faults": dict(self.faults),
                "upstream_errors": self.upstream_errors,
            }

    # Bookkeeping for the handler threads.

    def _count(self, counter: str) -> int:
        with self._lock:
            value: int = getattr(self, counter) + 1
            setattr(self, counter, value)
            return value

    def _count_fault(self, kind: str) -> None:
        with self._lock:
            self.faults[kind] += 1

    def _track(self, connection: socket.socket, is_open: bool) -> None:
        with self._lock:
            if is_open:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    proxy: FaultProxy

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that goes away mid-answer is expected under faults (a dropped connection, a
        # timed-out slow request): say nothing. Anything else is a bug of the proxy: print it.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1, so the SDKs keep their connections alive as they do with S3 (and the server answers
    # their `Expect: 100-continue` before reading the body).
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.proxy._track(self.connection, is_open=True)

    def finish(self) -> None:
        self.server.proxy._track(self.connection, is_open=False)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        # Quiet: a run under faults sends thousands of requests; `summary()` counts them.
        pass

    def relay(self) -> None:
        proxy = self.server.proxy
        number = proxy._count("requests")
        try:
            body, trailers = self._read_body()
        except ValueError as error:
            self.send_error(400, f"Malformed request body: {error}")
            return
        except EOFError:
            self.close_connection = True  # the client went away mid-body: nobody to answer
            return
        kind = proxy.decide(self.command)
        if kind is not None:
            proxy._count_fault(kind)
        if kind == "drop":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if kind in ERRORS:
            status, code, message = ERRORS[kind]
            self._answer_error(status, code, message, request_id=f"fault-{number}")
            return
        if kind == "slow":
            time.sleep(proxy.slow_seconds)
        self._forward(body, trailers)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = do_OPTIONS = relay

    def _read_body(self) -> tuple[bytes | None, list[tuple[str, str]]]:
        """The request's body (None if it has none) and its trailer fields: by Content-Length, or
        de-chunked if sent chunked (the trailers are then forwarded as headers)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return _read_chunked(self.rfile)
        length = self.headers.get("Content-Length")
        if length is None:
            return None, []
        if not length.strip().isdigit():
            raise ValueError(f"Content-Length {length!r}")
        return _read_exactly(self.rfile, int(length)), []

    def _forward(self, body: bytes | None, trailers: list[tuple[str, str]]) -> None:
        proxy = self.server.proxy
        # A connection per request: moto's server closes each one after answering anyway.
        upstream = http.client.HTTPConnection(proxy._host, proxy._port, timeout=_UPSTREAM_TIMEOUT)
        try:
            # The client's own Host goes on unchanged: it is part of the request's signature.
            upstream.putrequest(
                self.command, proxy._prefix + self.path, skip_host=True, skip_accept_encoding=True
            )
            for name, value in _relayed(self.headers.items(), self.headers.get_all("Connection")):
                upstream.putheader(name, value)
            for name, value in _relayed(trailers, None):
                upstream.putheader(name, value)
            if body is not None:
                upstream.putheader("Content-Length", str(len(body)))
            upstream.endheaders(body or None)
            response = upstream.getresponse()
        except (OSError, http.client.HTTPException) as error:
            upstream.close()
            proxy._count("upstream_errors")
            self._answer_error(502, "BadGateway", f"{proxy.target} did not answer: {error}")
            return
        try:
            proxy._count("forwarded")
            self._relay_response(response)
        finally:
            upstream.close()

    def _relay_response(self, response: http.client.HTTPResponse) -> None:
        self.send_response_only(response.status, response.reason)
        for name, value in _relayed(response.getheaders(), response.headers.get_all("Connection")):
            self.send_header(name, value)
        declared = response.getheader("Content-Length")
        if self.command == "HEAD" or response.status == 304:
            # No body, but the length of the one a GET would get (HeadObject's object size).
            if declared is not None:
                self.send_header("Content-Length", declared)
            self.end_headers()
            return
        if response.status == 204 or response.status < 200:
            self.end_headers()  # no body, and no Content-Length allowed
            return
        if declared is None or response.chunked:
            # Length unknown up front: take the whole body, then state its length.
            data = response.read()
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        # Length known: stream it (an S3A read may be large).
        self.send_header("Content-Length", declared)
        self.end_headers()
        sent = 0
        while chunk := response.read(_BLOCK):
            self.wfile.write(chunk)
            sent += len(chunk)
        if sent != int(declared):
            # moto's answer broke off: closing is the only way left to tell the client.
            self.close_connection = True

    def _answer_error(self, status: int, code: str, message: str, request_id: str = "") -> None:
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            f"<RequestId>{request_id}</RequestId></Error>"
        ).encode()
        self.send_response_only(status)
        self.send_header("Date", self.date_time_string())
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        if request_id:
            self.send_header("x-amz-request-id", request_id)
        self.end_headers()
        if self.command != "HEAD":  # an answer to HEAD has no body, an error's neither (as S3's)
            self.wfile.write(body)


def _relayed(
    headers: Iterable[tuple[str, str]], connection: list[str] | None
) -> Iterable[tuple[str, str]]:
    """`headers` without those never relayed, nor those the Connection header names as being about
    this connection only."""
    named = {token.strip().lower() for value in connection or [] for token in value.split(",")}
    for name, value in headers:
        if name.lower() not in _NOT_RELAYED and name.lower() not in named:
            yield name, value


def _read_exactly(stream: io.BufferedIOBase, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError(f"the body broke off after {len(data)} of {size} bytes")
    return data


def _read_chunked(stream: io.BufferedIOBase) -> tuple[bytes, list[tuple[str, str]]]:
    """A chunked body (RFC 9112 section 7.1) de-chunked, and its trailer fields."""
    body = bytearray()
    while True:
        line = stream.readline(_MAX_LINE)
        if not line.endswith(b"\n"):
            raise EOFError("the chunked body broke off")
        size = int(line.split(b";", 1)[0].strip(), 16)  # a ValueError if it is no hex number
        if size < 0:
            raise ValueError(f"a chunk of {size} bytes")
        if size == 0:
            break
        body += _read_exactly(stream, size)
        if _read_exactly(stream, 2) != b"\r\n":
            raise ValueError("a chunk does not end with CRLF")
    trailers: list[tuple[str, str]] = []
    while (line := stream.readline(_MAX_LINE)) not in (b"\r\n", b"\n"):
        if not line.endswith(b"\n"):
            raise EOFError("the chunked body's trailer broke off")
        name, colon, value = line.decode("latin-1").partition(":")
        if not colon:
            raise ValueError(f"a trailer line without a colon: {line!r}")
        trailers.append((name.strip(), value.strip()))
    return bytes(body), trailers
