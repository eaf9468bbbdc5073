"""`procmon-ctl serve`: Prometheus metrics.

Two sources.  The instance's counters are not polled: every scrape reads them
(Instance.counters: the pinned `counters` map opened, checked to be the one `load`
pinned, summed with one bpf_map_lookup_elem per key, and closed again, since an
fd kept open would keep the map alive after `unload`) and which programs are
attached.  With
--attach the instance is serve's own (a PrivateInstance, pinned nowhere),
attached for as long as serve lives.  And serve is a reader of its own (unless
--counters-only): the main thread counts the records into a StreamTally
(process/tally.py) while the HTTP threads answer scrapes from snapshots of it.

The HTTP side is wsgiref's server and prometheus-client's WSGI app (so `name[]`
filters as in the library's own server), with what a long-lived exporter needs
and `start_http_server` lacks: a bounded cost per connection (see MetricsServer)."""

from __future__ import annotations

import errno
import io
import selectors
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import CollectorRegistry, ProcessCollector, make_wsgi_app
from prometheus_client.registry import Collector

from ..errors import BpfError, Command, Given, Setting, StateError, UsageError
from ..instance.base import Instance
from ..instance.pinned import PinnedInstance
from ..instance.pins import PROGRAMS
from ..kernel import libbpf
from ..kernel.abi import COUNTER_NAMES
from ..kernel.system import require_root
from ..process.tally import DEFAULT_LIMIT, StreamTally
from ..stream.counting import count_records
from ..stream.follow import StreamOptions
from ..views.metrics import metric_families, tally_families

DEFAULT_PORT = 9464

# What one client, or many, can cost serve (stated in `serve --help` and the unit).
# A scrape is one short GET answered in milliseconds; these leave a Prometheus, a
# curl and a browser ample room and cap what idle or slow sockets can hold.
MAX_CONNECTIONS = 64  # open at once; a new one closes the oldest still-silent one
REQUEST_TIMEOUT = 10.0  # seconds from accept to a complete request head, and per write
ANSWERING_THREADS = 4  # requests answered at once (the rest queue, already read)
MAX_REQUEST_HEAD = 16384  # bytes; a GET for /metrics is a few hundred
# Values with a series of their own per label (--top) at most: each is a series
# every scrape carries and Prometheus keeps.
MAX_TOP = 1000


class ProcmonCollector(Collector):
    """Reads the instance at scrape time.  While nothing is loaded, only
    procmon_loaded 0 and procmon_attached 0 are reported, and what serve's own
    reader has counted (`tally`; None: serve reads no records)."""

    def __init__(
        self,
        instance: Instance,
        option: Callable[[str], str],
        tally: StreamTally | None = None,
        failed: bool = False,
    ):
        self.instance = instance
        self.option = option  # the CLI's spelling of a setting, for the help texts
        self.tally, self.failed = tally, failed

    def describe(self):
        # The registry finds the collector of a `name[]` filter by these names, so
        # every family must be here; registering must not read the maps, and only
        # the names count, so zeros stand in for the values.
        families = list(metric_families(dict.fromkeys(COUNTER_NAMES, 0), set(), self.option))
        if self.tally is not None:
            families += tally_families(StreamTally(limit=1).snapshot(), self.failed, self.option)
        return families

    def _read(self) -> tuple[dict[str, int] | None, set[str]]:
        """The counters (None: nothing loaded, or not what procmon-ctl loaded) and
        the attached events."""
        try:
            counters = self.instance.counters()
        except (StateError, libbpf.LibbpfError):
            counters = None  # unloaded (or loaded again) since serve started
        return counters, set(self.instance.attached_events())

    def collect(self):
        yield from metric_families(*self._read(), self.option)
        if self.tally is not None:
            yield from tally_families(self.tally.snapshot(), self.failed, self.option)


def make_registry(collector: ProcmonCollector) -> CollectorRegistry:
    # ProcessCollector has no describe(): without this flag a `name[]` filter
    # would never reach it.
    registry = CollectorRegistry(auto_describe=False, support_collectors_without_names=True)
    registry.register(collector)
    ProcessCollector(registry=registry)  # process_cpu_seconds_total, _resident_memory_bytes...
    return registry


def check_loaded(pinned: PinnedInstance) -> None:
    pinned.require_loaded(
        (
            "run ",
            Command("load"),
            " and ",
            Command("attach"),
            " first, or use ",
            Command("serve", ("attach",)),
        )
    )
    try:
        pinned.counters()
    except libbpf.LibbpfError as err:
        raise BpfError(f"cannot read {pinned.layout.map('counters')}: {err}") from None


@dataclass(eq=False)
class _Waiting:
    """An accepted connection whose request head has not all arrived yet."""

    sock: socket.socket
    address: tuple
    deadline: float
    head: bytearray = field(default_factory=bytearray)


class _MetricsRequestHandler(WSGIRequestHandler):
    """wsgiref's handler, given the request head the server has already read, so
    an answering thread never waits for a client to send."""

    timeout = REQUEST_TIMEOUT  # for writing the answer to a client that does not read

    def __init__(self, request, client_address, server, head: bytes):
        self.head = head
        super().__init__(request, client_address, server)

    def setup(self):
        super().setup()
        # Closed, not just replaced: the socket's file object keeps its fd open.
        self.rfile.close()
        self.rfile = io.BytesIO(self.head)

    def log_message(self, format, *args):
        pass  # a line per scrape would fill the journal


class MetricsServer(WSGIServer):
    """wsgiref's WSGI server with a bounded cost per client.

    socketserver's ThreadingMixIn (what start_http_server uses) spends a thread per
    connection for as long as the client keeps it open, and never times out: a
    few hundred silent sockets are a few hundred threads.  Here one thread accepts
    every connection and reads request heads without blocking; a connection costs
    a thread only once its whole head has arrived, and then only for as long as
    writing the answer takes.  A connection silent for REQUEST_TIMEOUT is closed,
    and so is the oldest silent one when MAX_CONNECTIONS are open, so sockets that
    say nothing cannot keep a real scrape out."""

    request_queue_size = 128  # a burst of connects waits in the backlog, not in SYN retries

    def __init__(self, where: tuple[int, tuple], app, complain: Callable[[str], None]):
        family, sockaddr = where
        self.complain = complain  # a scrape that failed, for the operator
        self.address_family = family
        super().__init__(sockaddr, _MetricsRequestHandler)
        self.set_app(app)
        self.socket.setblocking(False)
        self._waiting: dict[socket.socket, _Waiting] = {}  # in accept order = deadline order
        self._answering = 0
        self._answering_lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        self._wakeup_read, self._wakeup_write = socket.socketpair()
        self._stopping = False
        self._pool = ThreadPoolExecutor(ANSWERING_THREADS, thread_name_prefix="procmon-answer")
        self._thread = threading.Thread(target=self._run, name="procmon-accept", daemon=True)

    def start(self) -> None:
        self._selector.register(self.socket, selectors.EVENT_READ)
        self._selector.register(self._wakeup_read, selectors.EVENT_READ)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, close what waits, let the answers under way finish."""
        self._stopping = True
        self._wakeup_write.send(b"x")
        self._thread.join()
        for waiting in list(self._waiting.values()):
            self._close(waiting)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._selector.close()
        self._wakeup_read.close()
        self._wakeup_write.close()
        self.server_close()

    def open_connections(self) -> int:
        return len(self._waiting) + self._answering

    def _run(self) -> None:
        while not self._stopping:
            timeout = None
            if self._waiting:
                oldest = next(iter(self._waiting.values()))
                timeout = max(0.0, oldest.deadline - time.monotonic())
            for key, _ in self._selector.select(timeout):
                if key.fileobj is self.socket:
                    self._accept()
                elif key.fileobj is self._wakeup_read:
                    self._wakeup_read.recv(64)
                else:
                    self._read(key.data)
            now = time.monotonic()
            while self._waiting:
                oldest = next(iter(self._waiting.values()))
                if oldest.deadline > now:
                    break
                self._close(oldest)

    def _accept(self) -> None:
        for _ in range(MAX_CONNECTIONS):  # then let reads and timeouts have a turn
            try:
                sock, address = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # e.g. EMFILE or a connection reset before accept: nothing to keep
            if self.open_connections() >= MAX_CONNECTIONS:
                if not self._waiting:
                    sock.close()  # every slot is answering: the client may retry
                    continue
                self._close(next(iter(self._waiting.values())))
            sock.setblocking(False)
            waiting = _Waiting(sock, address, time.monotonic() + REQUEST_TIMEOUT)
            self._waiting[sock] = waiting
            self._selector.register(sock, selectors.EVENT_READ, waiting)

    def _read(self, waiting: _Waiting) -> None:
        if waiting.sock not in self._waiting:
            return  # closed earlier in this round (evicted by an accept)
        try:
            data = waiting.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(waiting)  # the client gave up
            return
        waiting.head += data
        if b"\r\n\r\n" in waiting.head or b"\n\n" in waiting.head:
            self._forget(waiting)
            with self._answering_lock:
                self._answering += 1
            self._pool.submit(self._answer, waiting)
        elif len(waiting.head) > MAX_REQUEST_HEAD:
            self._close(waiting)

    def _answer(self, waiting: _Waiting) -> None:
        try:
            _MetricsRequestHandler(waiting.sock, waiting.address, self, bytes(waiting.head))
        except OSError:
            pass  # the client went away or stopped reading: its loss, nobody else's
        except Exception as err:  # one bad scrape must not end serve
            self.complain(f"answering {waiting.address[0]} failed: {err}")
        finally:
            self.shutdown_request(waiting.sock)
            with self._answering_lock:
                self._answering -= 1

    def _forget(self, waiting: _Waiting) -> None:
        self._selector.unregister(waiting.sock)
        del self._waiting[waiting.sock]

    def _close(self, waiting: _Waiting) -> None:
        self._forget(waiting)
        waiting.sock.close()


def check_port(port: int) -> None:
    # Port 0 would make the kernel choose one nobody could find to scrape.
    if not 1 <= port <= 65535:
        raise UsageError(
            (Setting("port"), f" {port} is not a TCP port: use 1-65535, e.g. {DEFAULT_PORT}")
        )


def listen_address(address: str, port: int) -> tuple[int, tuple]:
    """The socket family and address to listen on for --address and --port, checked
    before anything is loaded."""
    check_port(port)
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(
            address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as err:
        # UnicodeError: the idna codec refuses a name before any lookup (a label
        # longer than 63 characters, an empty one, bytes that are not UTF-8).
        why = err.strerror if isinstance(err, socket.gaierror) else "not a valid host name"
        raise UsageError(
            (
                Setting("address"),
                " ",
                Given(address),
                f" is not an address to listen on: {why}; "
                "give an address of this host, e.g. 127.0.0.1 (0.0.0.0 for every interface)",
            )
        ) from None
    return family, sockaddr[:2]


def answering_head(app):
    """prometheus-client's WSGI app, with HEAD answered as GET without the body
    (RFC 9110 9.3.2): the app answers 405 to any method but GET and OPTIONS, and
    health checks and uptime monitors probe with HEAD.  Its `Allow` headers (on
    OPTIONS and on a 405) list HEAD too."""

    def allowing_head(start_response):
        def start(status, headers, exc_info=None):
            headers = [
                (k, "OPTIONS,GET,HEAD") if k.lower() == "allow" else (k, v) for k, v in headers
            ]
            return start_response(status, headers, exc_info)

        return start

    def head_as_get(environ, start_response):
        if environ.get("REQUEST_METHOD") != "HEAD":
            return app(environ, allowing_head(start_response))
        answer: list[tuple[str, list]] = []

        def keep(status, headers, exc_info=None):
            answer.append((status, headers))
            return lambda data: None

        body = b"".join(app({**environ, "REQUEST_METHOD": "GET"}, keep))
        status, headers = answer[-1]
        # The length GET would send (wsgiref would say 0 for the empty body).
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        allowing_head(start_response)(status, [*headers, ("Content-Length", str(len(body)))])
        return []

    return head_as_get


@contextmanager
def metrics_server(
    registry: CollectorRegistry,
    address: str,
    where: tuple[int, tuple],
    complain: Callable[[str], None],
) -> Iterator[str]:
    """Serve /metrics at `where` (listen_address()) from threads of its own; yields
    the URL."""
    port = where[1][1]
    try:
        httpd = MetricsServer(where, answering_head(make_wsgi_app(registry)), complain)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise StateError(
                (
                    f"port {port} on {address} is already in use: stop what listens "
                    "there or choose another ",
                    Setting("port"),
                )
            ) from None
        if err.errno == errno.EADDRNOTAVAIL:
            raise UsageError(
                (Setting("address"), f" {address} is not an address of this host")
            ) from None
        raise StateError(f"cannot listen on {address}:{port}: {err.strerror}") from None
    host, bound = httpd.server_address[:2]
    shown = f"[{host}]" if ":" in host else host
    httpd.start()
    try:
        yield f"http://{shown}:{bound}/metrics"
    finally:
        httpd.stop()


@dataclass(frozen=True)
class Counting:
    """What serve's own reader counts: nothing (None in its place), or every record
    with `top` values per label, and failed execs too when `failed`."""

    top: int
    failed: bool = False


# How often serve looks for an instance loaded again after an unload.
RELOAD_POLL = 1.0


def check_top(top: int) -> None:
    if not 1 <= top <= MAX_TOP:
        raise UsageError(
            (
                Setting("top"),
                f" {top} is out of range: give 1-{MAX_TOP} values per label "
                f"(series by command, container, user), e.g. {DEFAULT_LIMIT}",
            )
        )


def serve_forever(
    pinned: PinnedInstance,
    address: str,
    port: int,
    attach_too: bool,
    object_path: str | None,
    counting: Counting | None,
    announce: Callable[[str], None],
    complain: Callable[[str], None],
    option: Callable[[str], str],
) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM arrive as exceptions in this thread),
    counting the instance's records as one reader among others unless `counting`
    is None.  With attach_too, serve an instance of its own that lives exactly as
    long as this process (pinned nowhere: however serve ends, nothing stays loaded
    or attached)."""
    from ..instance.startup import find_object

    where = listen_address(address, port)
    if counting is not None:
        check_top(counting.top)
    if object_path is not None and not attach_too:
        raise UsageError(
            (
                Setting("object"),
                " only applies with ",
                Setting("attach"),
                " (serve loads nothing without it)",
            )
        )
    if counting is not None and counting.failed and attach_too:
        raise UsageError(
            (
                Setting("failed"),
                " needs the pinned instance (`load` pins the failed-exec programs; ",
                Setting("attach"),
                "'s instance has none): run ",
                Command("load"),
                " and ",
                Command("attach"),
                ", then serve without ",
                Setting("attach"),
            )
        )
    attach_obj = find_object(object_path) if attach_too else None
    require_root("reading BPF maps")
    tally = None if counting is None else StreamTally(limit=counting.top)
    failed = counting is not None and counting.failed
    if attach_obj is None:
        check_loaded(pinned)
        if failed:
            from ..instance.exec_failures import check

            check(pinned)
        registry = make_registry(ProcmonCollector(pinned, option, tally, failed))
        with metrics_server(registry, address, where, complain) as url:
            announce(f"serving {pinned.root} at {url}")
            if tally is None:
                _wait()
            _count_pinned(pinned, StreamOptions(failed=failed, argv_bytes=0), tally, announce)
        return
    from ..instance.private import PrivateInstance
    from ..instance.readers import ReaderWants

    # The reader's slot is taken before anything is attached: nothing goes uncounted.
    reader = None if tally is None else ReaderWants(argv_bytes=0)
    # The server stops before the instance closes, so no scrape reads closed fds.
    with PrivateInstance(attach_obj, list(PROGRAMS), None, reader=reader) as instance:
        registry = make_registry(ProcmonCollector(instance, option, tally))
        with metrics_server(registry, address, where, complain) as url:
            announce(
                f"loaded and attached an instance of its own (pinned nowhere); serving at {url}"
            )
            if tally is None:
                _wait()
            count_records(instance, StreamOptions(argv_bytes=0), tally)


def _count_pinned(
    pinned: PinnedInstance,
    opts: StreamOptions,
    tally: StreamTally,
    announce: Callable[[str], None],
) -> None:
    """Count the pinned instance's records for as long as serve runs: when it is
    unloaded, the counts so far stay, and counting goes on once one is loaded
    again (as the counters are read from whatever is loaded at each scrape)."""
    started: list[bool] = []
    while True:
        started.clear()
        try:
            count_records(pinned, opts, tally, opened=lambda: started.append(True))
        except StateError:
            if not started:
                raise  # the reader could not start: not an unload under it
            announce(f"{pinned.root} was unloaded: counting again once it is loaded")
        while not pinned.layout.is_complete():
            time.sleep(RELOAD_POLL)


def _wait() -> None:
    # The HTTP server runs in its own thread; this one only waits for a signal, whose
    # handler (cli.main's) raises and so unwinds the context managers above.
    while True:
        signal.pause()
