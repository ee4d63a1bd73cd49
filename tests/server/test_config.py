"""server.config: one table, unknown and contradictory settings refused with a sentence."""

from __future__ import annotations

import subprocess
import sys

import pytest

from server import config
from server.errors import ConfigError
from server.testing import REPO_ROOT


def test_defaults_are_safe() -> None:
    settings = config.parse(["m:app"])
    assert settings.bind == ("127.0.0.1", 8000)  # loopback unless told otherwise
    assert settings.max_body == 10 * config.MiB
    assert settings.max_header_bytes == 32 * 1024 and settings.max_headers == 100
    assert settings.header_timeout > 0 and settings.keepalive_timeout > 0
    assert not settings.lazy_apps and settings.workers == 2 and settings.threads == 4


def test_every_setting_is_an_option() -> None:
    options = config.build_parser().format_help()
    for name, *_ in config.SETTINGS:
        assert "--" + name.replace("_", "-") in options


def test_max_connections_defaults_to_the_open_file_limit() -> None:
    """Derived so accept() never runs the worker out of descriptors; an explicit value is kept."""
    assert config.parse(["m:app"]).max_connections == config.fd_limit() - config.FD_RESERVE
    assert config.parse(["m:app", "--max-connections", "16"]).max_connections == 16


def test_max_body_buffer_defaults_to_four_bodies_at_least_64_mib() -> None:
    assert config.parse(["m:app"]).max_body_buffer == 64 * config.MiB
    assert config.parse(["m:app", "--max-body", str(100 * config.MiB)]).max_body_buffer == (
        400 * config.MiB
    )


def test_jitter_defaults_to_a_tenth() -> None:
    assert config.parse(["m:app", "--max-requests", "5000"]).max_requests_jitter == 500


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["m:app", "--workers", "0"], "positive"),
        (["m:app", "--threads", "-1"], "positive"),
        (["m:app", "--bind", "nowhere"], "HOST:PORT"),
        (["m:app", "--bind", "127.0.0.1:70000"], "outside"),
        (["m:app", "--unknown-thing"], "Unrecognized"),
        (["module_without_callable"], "MODULE:CALLABLE"),
        (["m:app", "--max-requests-jitter", "5"], "needs --max-requests"),
        (["m:app", "--header-timeout", "0"], "above 0"),
        (["m:app", "--harakiri", "0.5"], "at least 1"),
        (["m:app", "--graceful-timeout", "nan"], "seconds"),
        (["m:app", "--min-rate", "0"], "positive"),
        (["m:app", "--max-connections", str(config.fd_limit())], "open-file limit"),
    ],
)
def test_refused(argv: list[str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        config.parse(argv)


def test_refusal_before_anything_starts() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "server", "m:app", "--workers", "0"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "positive integer" in proc.stderr and "listening" not in proc.stderr


def test_missing_httptools_is_one_line_naming_the_extra() -> None:
    """``python -m server`` without httptools: exit 1 with one line saying what to install."""
    import subprocess
    import sys

    code = (
        "import sys, runpy; sys.modules['httptools'] = None; "
        "runpy.run_module('server', run_name='__main__')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(__import__("server.testing").testing.REPO_ROOT),
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'safeclients[server]'" in lines[0], proc.stderr
