"""The rows every database backend is seeded with, so an app's answer can be checked.

Table ``items(id, val)`` holds ``id`` 1..ITEM_COUNT with ``val = item_value(id)``: a request
that asks for row ``n`` and gets any other value got another request's row.
"""

from __future__ import annotations

ITEM_COUNT = 1000
APP_USER = "app"
APP_PASSWORD = "app-password"
APP_DATABASE = "app"


def item_value(item_id: int) -> str:
    return f"val-{item_id}"


def item_rows() -> list[tuple[int, str]]:
    return [(i, item_value(i)) for i in range(1, ITEM_COUNT + 1)]
