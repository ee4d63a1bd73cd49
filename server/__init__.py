"""A prefork-threaded WSGI server on uWSGI's model: the proving ground for safeclients.

The master process binds the listening socket, imports the application (unless ``--lazy-apps``)
and forks N workers; each worker runs M threads that each ``accept()`` on the shared socket, read
one request at a time, call the application and write the response. That is exactly the shape
that breaks a module-global, non-thread-safe client, which is why this package exists.

Run it with ``python -m server MODULE:CALLABLE [options]`` (``--help`` lists the options); start
it from tests with :class:`server.testing.ServerProcess`.

Why httptools: it wraps llhttp, the parser Node.js ships, which is maintained, strict by default
(it refuses Content-Length together with Transfer-Encoding, duplicate Content-Length, obs-fold,
bare CR and NUL in headers) and runs in C. h11 is as careful but pure Python, several times slower
per request, and its state machine would be a second one beside our connection loop. We keep
our protocol code sans-IO on top of it (:mod:`server.parser`, :mod:`server.response`) so it is
tested with tables and no sockets.
"""

__version__ = "0.1.0"
