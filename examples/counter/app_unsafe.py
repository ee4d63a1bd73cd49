"""The seed's story: a module-global ``count`` bumped by every request. It loses updates.

``count += 1`` alone never loses one on CPython 3.11 (no thread switch between its read and its
write), which is why this bug hides in tests. Real views do something between reading and writing
(here :func:`slow_io`): another thread runs there, reads the same old value, and one of the two
increments is lost. Under a threaded server N requests leave the count below N.
"""

from examples.counter._app import make_application, slow_io

count = 0


def increment() -> int:
    global count
    current = count  # read
    slow_io()  # a function call that lets another thread run
    count = current + 1  # write: overwrites any increment made meanwhile
    return count


application = make_application(increment, lambda: count)
