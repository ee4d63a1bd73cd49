"""Errors of the backend launchers, under one base; each message is a sentence with the numbers."""

from __future__ import annotations


class BackendError(RuntimeError):
    """A backend launcher could not do what it was asked (start, count, kill, stop)."""


class BackendMissingError(BackendError):
    """The server binary is not installed: the message names it, its Debian package and the fix."""

    def __init__(self, name: str, binary: str, package: str) -> None:
        super().__init__(
            f"{name}: {binary} is not installed (Debian package {package!r}); "
            f"run scripts/bootstrap.sh, which installs it"
        )
        self.binary = binary
        self.package = package


class BackendStartError(BackendError):
    """The server did not come up: the message says after how long, on which ports, and its log."""


class BackendAdminError(BackendError):
    """An admin command (connection count, kill) failed or answered something unexpected."""
