"""WSGI applications the server tests run (each wrapped in wsgiref's validator where it can be).

They are imported by the server's master (or by its workers under --lazy-apps), never by the
test process itself except for the sans-IO unit tests.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.validate import validator

StartResponse = Callable[..., Any]
Environ = dict[str, Any]

IMPORTED_AT = time.time()


def _say(line: str) -> None:
    """One line to stdout in one write, so lines from concurrent threads never interleave."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()  # differs per import: tells a re-import (lazy-apps reload) apart


def _hello(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    body = b"Hello, world!\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


hello = validator(_hello)
hello_raw = _hello  # for benchmarks: no validator overhead


def _echo(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """Everything a test wants to know about the request, as JSON; reads the whole body."""
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    keys = {k: v for k, v in environ.items() if isinstance(v, str)}
    payload = {
        "environ": keys,
        "body_length": len(body),
        "body": body.decode("latin-1"),
        "pid": os.getpid(),
        "thread": threading.get_ident(),
        "imported_at": IMPORTED_AT,
        "multithread": environ["wsgi.multithread"],
        "multiprocess": environ["wsgi.multiprocess"],
    }
    data = json.dumps(payload).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


echo = validator(_echo)


def _router(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    for prefix, handler in ROUTES.items():
        if path == prefix or path.startswith(prefix + "/"):
            return handler(environ, start_response)
    return _echo(environ, start_response)


def _slow(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    seconds = float(environ["QUERY_STRING"].partition("=")[2] or "2")
    main = threading.current_thread() is threading.main_thread()
    _say(f"slow request started in pid {os.getpid()} (main thread: {main})")  # tests wait for this
    time.sleep(seconds)  # the request's own work, not synchronisation: it simulates a slow app
    body = f"slept {seconds}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _stream(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    """No Content-Length: the server must chunk it (HTTP/1.1) or close after it (HTTP/1.0)."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    for i in range(int(environ["QUERY_STRING"].partition("=")[2] or "5")):
        yield b"chunk %d\n" % i


def _boom(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    raise RuntimeError("secret-traceback-marker: the app failed")


def _inject(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Bad", "a\r\nSet-Cookie: evil=1")])
    return [b"should not be sent\n"]


def _hop(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Connection", "keep-alive"), ("Content-Length", "2")])
    return [b"ok"]


def _file(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response(
        "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(__doc__ or "")))]
    )
    import io

    return environ["wsgi.file_wrapper"](io.BytesIO((__doc__ or "").encode()), 7)  # type: ignore[no-any-return]


def _sendfile(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """This very file through wsgi.file_wrapper with a Content-Length: the sendfile(2) path."""
    size = os.path.getsize(__file__)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(size))])
    return environ["wsgi.file_wrapper"](open(__file__, "rb"))  # type: ignore[no-any-return]


def _pid(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _thread(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """Which thread serves this request: the worker's main thread (core 0) or another core."""
    current = threading.current_thread()
    body = json.dumps(
        {
            "pid": os.getpid(),
            "main": current is threading.main_thread(),
            "name": current.name,
        }
    ).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


class _Closing:
    """An iterable that records its close() in a header-visible way via the log (stderr)."""

    def __init__(self) -> None:
        self.sent = False

    def __iter__(self) -> Iterator[bytes]:
        yield b"part1\n"
        raise RuntimeError("mid-stream failure")

    def close(self) -> None:
        _say("closing-iterable-closed")


def _midfail(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return _Closing()


def _big(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    """``?bytes=N``: N bytes with a Content-Length, in 64 kB blocks (a slow reader's target)."""
    size = int(environ["QUERY_STRING"].partition("=")[2] or "1000000")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(size))])
    block = b"x" * 65536
    while size > 0:
        yield block[:size]
        size -= len(block)


_HELD_FILES: list[int] = []  # file descriptors /hog holds (one worker's, module-global)


def _hog(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """Open /dev/null until the open-file limit is reached and hold every descriptor for
    ``?seconds=S``, then release them (a timer thread): what an application leaking files
    does to accept(), which then fails with EMFILE."""
    seconds = float(environ["QUERY_STRING"].partition("=")[2] or "3")
    try:
        while True:
            _HELD_FILES.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass  # EMFILE: every descriptor is taken
    held = len(_HELD_FILES)

    def release() -> None:
        while _HELD_FILES:
            os.close(_HELD_FILES.pop())
        _say(f"hog released {held} files in pid {os.getpid()}")

    threading.Timer(seconds, release).start()
    _say(f"hog holds {held} files in pid {os.getpid()}")
    body = str(held).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _limit_open_files() -> None:
    """``SERVER_TEST_NOFILE=N``: lower the open-file limit at import (in the master, before
    the workers are forked), below what --max-connections was derived from."""
    limit = os.environ.get("SERVER_TEST_NOFILE")
    if limit:
        import resource

        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (int(limit), hard))


_limit_open_files()


def _heavy(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """A page's worth of Python work (benchmarks): build and serialise 200 records, ~20 kB."""
    records = [
        {"id": i, "name": f"item-{i}", "tags": ["a", "b", str(i % 7)], "price": i * 1.25}
        for i in range(200)
    ]
    body = json.dumps({"path": environ["PATH_INFO"], "records": records}).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


GATHER_PARTIES = 3  # requests that must be inside the application at once (test_relay)
_GATHERINGS = {
    where: threading.Barrier(GATHER_PARTIES, timeout=10) for where in ("call", "body", "close")
}


def _gathered(where: str) -> bytes:
    """Wait until GATHER_PARTIES requests wait here too (10 s at most): proof that the
    application's code of that many requests runs at once in this worker."""
    try:
        _GATHERINGS[where].wait()
    except threading.BrokenBarrierError:
        return b"alone\n"
    return b"gathered\n"


class _GatheringClose:
    """A body whose ``close()`` waits for the other requests' ``close()``."""

    def __iter__(self) -> Iterator[bytes]:
        yield b"body\n"

    def close(self) -> None:
        _say(f"close {_gathered('close').decode().strip()}")


def _gather(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """``?in=call|body|close``: the request waits for GATHER_PARTIES - 1 others in the
    application's call, in its body's iteration, or in its iterable's close()."""
    where = environ["QUERY_STRING"].partition("=")[2] or "call"
    start_response("200 OK", [("Content-Type", "text/plain")])
    if where == "call":
        return [_gathered("call")]
    if where == "body":
        return (_gathered("body") for _ in range(1))
    return _GatheringClose()


def bench_raw(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """The benchmark's app (benchmarks/server_bench.py): /heavy, /wait (a 2 ms wait, as on a
    database, then hello), anything else hello."""
    path = environ["PATH_INFO"]
    if path == "/heavy":
        return _heavy(environ, start_response)
    if path == "/wait":
        time.sleep(0.002)
    return _hello(environ, start_response)


ROUTES: dict[str, Callable[[Environ, StartResponse], Iterable[bytes]]] = {
    "/big": _big,
    "/hog": _hog,
    "/slow": _slow,
    "/thread": _thread,
    "/stream": _stream,
    "/boom": _boom,
    "/inject": _inject,
    "/hop": _hop,
    "/file": _file,
    "/sendfile": _sendfile,
    "/pid": _pid,
    "/midfail": _midfail,
    "/hello": _hello,
    "/gather": _gather,
}

router = validator(_router)
router_raw = _router  # for cases the validator itself refuses (header injection, hop-by-hop)


def _broken_import() -> None:
    if os.environ.get("SERVER_TEST_BROKEN_APP") == "1":
        raise ImportError("this app refuses to import (test of the boot-failure rule)")


_broken_import()
