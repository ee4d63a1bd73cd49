"""The seed's story, fixed with ``safeclients.locked``: the counter is an object behind a lock.

The same read / call / write code moves into a small class; ``safeclients.locked(Counter)`` makes
every method call run under one lock per process, so no increment is lost. (Each worker process
still has its own counter: after a fork the proxy builds a new one from the factory.)
"""

import safeclients
from examples.counter._app import make_application, slow_io


class Counter:
    """Not thread-safe on its own: same read / call / write as the unsafe version."""

    def __init__(self) -> None:
        self.value = 0

    def increment(self) -> int:
        current = self.value
        slow_io()
        self.value = current + 1
        return self.value

    def current(self) -> int:
        return self.value


counter = safeclients.locked(Counter)

# Look the methods up per call (not at import, in the master), so each worker uses its own.
application = make_application(lambda: counter.increment(), lambda: counter.current())
