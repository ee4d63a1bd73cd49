"""``safeclients.profiles``: the shipped table, lookup by MRO, `broken`, close/check, loading.

Unit tests: no sockets, no servers. Clients that are not installed are stood in for by classes
whose module and qualified name match (all the registry reads); the tests that use a real
driver's classes (PyMySQL, psycopg2, pika: declared by the real-clients work, not by this
branch) skip when it is not installed.
"""

from __future__ import annotations

import dataclasses
import http.client
import smtplib
import sqlite3
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from safeclients import audit, profiles
from safeclients._profile_table import SHIPPED
from safeclients.profiles import Profile, broken_by, profile_for, qualname

REPO = Path(__file__).resolve().parents[2]
FIXTURES = "tests.audit.fixtures"
ENTRY_POINTS = REPO / "tests" / "audit" / "fixtures" / "entry_points"
PIKA = "pika.adapters.blocking_connection."


def driver(name: str) -> Any:
    """An installed driver module, or skip the test (see the module docstring)."""
    return pytest.importorskip(name)


def fake(module: str, name: str, **attributes: object) -> type:
    cls = type(name, (), dict(attributes))
    cls.__module__ = module
    return cls


@pytest.fixture
def restore_registry() -> Iterator[None]:
    """Tests that register or unregister leave the registry as they found it."""
    before = profiles.registered()
    with profiles._registry_lock:
        saved = dict(profiles._registry)
    yield
    with profiles._registry_lock:
        profiles._registry.clear()
        profiles._registry.update(saved)
    assert profiles.registered() == before


# --- the shipped table --------------------------------------------------------------------

REQUIRED = {
    "gearman.client.GearmanClient",
    "pymysql.connections.Connection",
    "MySQLdb.connections.Connection",
    "psycopg2.extensions.connection",
    "psycopg.Connection",
    "pika.adapters.blocking_connection.BlockingConnection",
    "pika.adapters.blocking_connection.BlockingChannel",
    "redis.client.Redis",
    "pymemcache.client.base.Client",
    "sqlite3.Connection",
    "http.client.HTTPConnection",
    "smtplib.SMTP",
    "ftplib.FTP",
    "paramiko.client.SSHClient",
    "grpc._channel.Channel",
}


def test_every_required_client_has_a_cited_profile() -> None:
    by_name = {p.qualname: p for p in SHIPPED}
    assert REQUIRED <= set(by_name), REQUIRED - set(by_name)
    for p in SHIPPED:
        assert p.suggest in profiles.POLICIES, p.qualname
        assert p.sources and all(s.startswith("https://") for s in p.sources), p.qualname
        assert p.reason.endswith("."), p.qualname
    assert len(by_name) == len(SHIPPED), "two shipped profiles share a qualname"


@pytest.mark.parametrize(
    ("name", "derived"),
    [
        ("pymysql.connections.Connection", {"cursor"}),
        ("MySQLdb.connections.Connection", {"cursor"}),
        ("psycopg2.extensions.connection", {"cursor"}),
        ("pika.adapters.blocking_connection.BlockingConnection", {"channel"}),
        ("redis.client.Redis", {"pipeline", "pubsub"}),
        ("sqlite3.Connection", {"cursor", "execute"}),
        ("http.client.HTTPConnection", {"getresponse"}),
    ],
)
def test_derived_methods(name: str, derived: set[str]) -> None:
    profile = profiles.registered()[name]
    assert derived <= profile.derived


def test_thread_safe_clients_are_per_process() -> None:
    safe = {p.qualname: p.suggest for p in SHIPPED if p.thread_safe}
    assert safe == {
        "redis.client.Redis": "per_process",
        "grpc._channel.Channel": "per_process",
        "paho.mqtt.client.Client": "per_process",
    }


def test_an_import_time_paho_client_is_flagged_and_its_check_knows_a_dead_thread() -> None:
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    app = types.ModuleType("mqtt_app")
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    vars(app).update(broker=client)
    [finding] = audit.find_unsafe([app])
    assert finding.type_name == "paho.mqtt.client.Client"
    profile = profile_for(type(client))
    assert profile is not None and profile.check is not None
    with pytest.raises(ConnectionError, match="not connected"):
        profile.check(client)
    ended = threading.Thread(target=lambda: None)
    ended.start()
    ended.join()
    client._thread = ended  # a network thread that does not run here any more
    with pytest.raises(ConnectionError, match="network thread"):
        profile.check(client)


def test_the_redis_profile_says_it_is_fork_aware() -> None:
    profile = profiles.registered()["redis.client.Redis"]
    assert profile.fork_aware and "shared by every worker" not in profile.reason


def test_the_audit_tells_each_client_s_thread_and_fork_safety() -> None:
    redis = driver("redis")
    app = types.ModuleType("truth_app")
    vars(app).update(
        cache=redis.Redis(host="127.0.0.1", port=9, socket_timeout=1),
        db=sqlite3.connect(":memory:", check_same_thread=False),
    )
    found = {f.where: f.safety for f in audit.find_unsafe([app])}
    assert found == {
        "truth_app.cache": "thread-safe; fork-aware (it opens new connections in a forked "
        "child itself)",
        "truth_app.db": "not thread-safe; not fork-aware (a forked child keeps using the "
        "parent's connection)",
    }


def test_real_classes_find_their_profiles() -> None:
    # The registry's names are the classes' own qualified names.
    for cls, name in [
        (sqlite3.Connection, "sqlite3.Connection"),
        (http.client.HTTPSConnection, "http.client.HTTPConnection"),
        (smtplib.SMTP_SSL, "smtplib.SMTP"),
    ]:
        profile = profile_for(cls)
        assert profile is not None and profile.qualname == name, cls


@pytest.mark.parametrize(
    ("module", "attribute", "name"),
    [
        ("pymysql.connections", "Connection", "pymysql.connections.Connection"),
        ("psycopg2.extensions", "connection", "psycopg2.extensions.connection"),
        (
            "pika.adapters.blocking_connection",
            "BlockingConnection",
            "pika.adapters.blocking_connection.BlockingConnection",
        ),
        (
            "pika.adapters.blocking_connection",
            "BlockingChannel",
            "pika.adapters.blocking_connection.BlockingChannel",
        ),
        ("redis.client", "Redis", "redis.client.Redis"),
        ("pymemcache.client.base", "Client", "pymemcache.client.base.Client"),
        ("gearman.client", "GearmanClient", "gearman.client.GearmanClient"),
    ],
)
def test_installed_drivers_classes_find_their_profiles(
    module: str, attribute: str, name: str
) -> None:
    cls = getattr(driver(module), attribute)
    profile = profile_for(cls)
    assert profile is not None and profile.qualname == name


# --- lookup -------------------------------------------------------------------------------


def test_profile_for_walks_the_mro_and_the_most_derived_wins(restore_registry: None) -> None:
    base = fake("vendorlib.client", "Client")
    derived = type("PooledClient", (base,), {})
    derived.__module__ = "vendorlib.client"
    profiles.register(Profile("vendorlib.client.Client", "base.", "locked", ("https://x",)))
    assert profile_for(derived) is profiles.registered()["vendorlib.client.Client"]
    profiles.register(
        Profile("vendorlib.client.PooledClient", "derived.", "pooled", ("https://y",))
    )
    assert profile_for(derived).reason == "derived."  # type: ignore[union-attr]
    assert profile_for(base).reason == "base."  # type: ignore[union-attr]
    assert profile_for(fake("vendorlib.client", "Other")) is None


def test_register_replaces_the_same_qualname_and_unregister_removes(restore_registry: None) -> None:
    profiles.register(Profile("vendorlib.Client", "one.", "locked", ("https://x",)))
    profiles.register(Profile("vendorlib.Client", "two.", "pooled", ("https://x",)))
    assert profiles.registered_as("vendorlib.Client").reason == "two."  # type: ignore[union-attr]
    profiles.unregister("vendorlib.Client")
    profiles.unregister("vendorlib.Client")  # absent: no error
    assert profiles.registered_as("vendorlib.Client") is None


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"qualname": "Client"}, ValueError, "not a qualified class name"),
        ({"sources": ["https://x"]}, TypeError, "sources must be a tuple"),
        ({"broken": "pymysql.err.OperationalError"}, TypeError, "broken must be a tuple"),
        ({"derived": {"cursor"}}, TypeError, "derived must be a frozenset"),
    ],
)
def test_a_malformed_profile_is_refused(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    fields = {
        "qualname": "vendorlib.Client",
        "reason": "r.",
        "suggest": "locked",
        "sources": ("https://x",),
        **kwargs,
    }
    with pytest.raises(error, match=message):
        Profile(**fields)


def test_register_refuses_what_is_not_a_profile() -> None:
    with pytest.raises(TypeError, match="takes a safeclients.profiles.Profile, not dict"):
        profiles.register({"qualname": "x.y"})  # type: ignore[arg-type]


def test_the_audit_register_wrapper_keeps_the_rest_of_a_profile(restore_registry: None) -> None:
    audit.register(
        "pymysql.connections.Connection",
        reason="Our own words.",
        suggest="safeclients.locked(factory)",
    )
    profile = profiles.registered_as("pymysql.connections.Connection")
    assert profile is not None and profile.reason == "Our own words."
    assert "pymysql.err.OperationalError" in profile.broken and "cursor" in profile.derived
    audit.register(fake("vendorlib", "Session"), reason="r.", suggest="per_thread")
    assert profiles.registered_as("vendorlib.Session") is not None
    audit.unregister("vendorlib.Session")
    assert profiles.registered_as("vendorlib.Session") is None


# --- broken -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "module", "error", "args", "expected"),
    [
        ("pymysql.connections.Connection", "pymysql.err", "OperationalError", (2013, "Lost"), True),
        ("pymysql.connections.Connection", "pymysql.err", "InterfaceError", (0, ""), True),
        (
            "pymysql.connections.Connection",
            "pymysql.err",
            "ProgrammingError",
            (1064, "syntax"),
            False,
        ),
        ("psycopg2.extensions.connection", "psycopg2", "OperationalError", ("closed",), True),
        ("psycopg2.extensions.connection", "psycopg2.errors", "AdminShutdown", ("bye",), True),
        ("psycopg2.extensions.connection", "psycopg2.errors", "UniqueViolation", ("dup",), False),
        (PIKA + "BlockingConnection", "pika.exceptions", "StreamLostError", ("lost",), True),
        (
            PIKA + "BlockingChannel",
            "pika.exceptions",
            "ChannelClosedByBroker",
            (404, "NOT_FOUND"),
            True,
        ),
        ("http.client.HTTPConnection", "http.client", "RemoteDisconnected", ("closed",), True),
        ("http.client.HTTPConnection", "builtins", "ConnectionResetError", (104, "reset"), True),
        ("http.client.HTTPConnection", "builtins", "ValueError", ("bad header",), False),
        ("redis.client.Redis", "builtins", "ConnectionError", ("refused",), False),
        ("gearman.client.GearmanClient", "gearman.errors", "ServerUnavailable", ("none",), True),
    ],
)
def test_broken_by_matches_over_the_exception_mro(
    name: str, module: str, error: str, args: tuple[object, ...], expected: bool
) -> None:
    exc = getattr(driver(module), error)(*args)
    assert broken_by(profiles.registered()[name], exc) is expected


def test_broken_by_matches_a_driver_that_is_not_installed() -> None:
    lost = type("OperationalError", (Exception,), {"__module__": "MySQLdb._exceptions"})
    assert broken_by(profiles.registered()["MySQLdb.connections.Connection"], lost())
    # psycopg 3 names its errors "psycopg.X" (its own __module__), a subclass defined in
    # psycopg.errors is matched through its MRO.
    base = type("OperationalError", (Exception,), {"__module__": "psycopg"})
    timeout = type("ConnectionTimeout", (base,), {"__module__": "psycopg.errors"})
    assert broken_by(profiles.registered()["psycopg.Connection"], timeout())
    connection = type("Connection", (), {"__module__": "psycopg"})
    assert profile_for(connection).qualname == "psycopg.Connection"  # type: ignore[union-attr]


# --- close and check ----------------------------------------------------------------------


def test_pymysql_close_is_quiet_on_a_closed_connection() -> None:
    pymysql = driver("pymysql")
    conn = pymysql.connections.Connection(host="127.0.0.1", port=9, defer_connect=True)
    close = profiles.registered()["pymysql.connections.Connection"].close
    assert close is not None
    close(conn)
    close(conn)  # PyMySQL itself raises err.Error("Already closed") here
    with pytest.raises(pymysql.err.Error, match="Already closed"):
        conn.close()


class FakePikaConnection:
    def __init__(self, is_open: bool = True, fail: BaseException | None = None) -> None:
        self.is_open, self.fail, self.closes, self.polls = is_open, fail, 0, 0

    def close(self) -> None:
        self.closes += 1
        if self.fail is not None:
            raise self.fail
        self.is_open = False

    def process_data_events(self, time_limit: float) -> None:
        assert time_limit == 0
        self.polls += 1


class FakePikaChannel:
    channel_number = 7

    def __init__(self, connection: FakePikaConnection) -> None:
        self.connection, self.is_open, self.closes = connection, True, 0

    def close(self) -> None:
        self.closes += 1
        self.is_open = False


def test_pika_close_skips_a_connection_the_broker_closed() -> None:
    pika_exceptions = driver("pika.exceptions")
    close = profiles.registered()[PIKA + "BlockingConnection"].close
    assert close is not None
    closed_by_broker = FakePikaConnection(is_open=False)
    close(closed_by_broker)
    assert closed_by_broker.closes == 0
    # Open when looked at, closed by the broker before close() ran: pika raises, we don't.
    racing = FakePikaConnection(fail=pika_exceptions.ConnectionWrongStateError("closed"))
    close(racing)
    assert racing.closes == 1


def test_a_pika_channels_close_closes_its_connection_too() -> None:
    driver("pika.exceptions")  # the close imports it to name what it swallows
    close = profiles.registered()[PIKA + "BlockingChannel"].close
    assert close is not None
    connection = FakePikaConnection()
    channel = FakePikaChannel(connection)
    close(channel)
    assert (channel.closes, connection.closes, connection.is_open) == (1, 1, False)
    close(channel)  # both already closed: nothing more, no error
    assert (channel.closes, connection.closes) == (1, 1)


def test_pika_check_polls_an_open_connection_and_raises_on_a_closed_one() -> None:
    pika_exceptions = driver("pika.exceptions")
    check = profiles.registered()[PIKA + "BlockingChannel"].check
    assert check is not None
    connection = FakePikaConnection()
    check(FakePikaChannel(connection))
    assert connection.polls == 1
    closed = FakePikaChannel(connection)
    closed.is_open = False
    with pytest.raises(pika_exceptions.ChannelWrongStateError, match="7 is closed"):
        check(closed)
    with pytest.raises(pika_exceptions.ConnectionWrongStateError):
        check(FakePikaChannel(FakePikaConnection(is_open=False)))


def test_psycopg2_close_and_check_on_a_closed_connection() -> None:
    psycopg2 = driver("psycopg2")

    class Conn:
        closed = 1
        InterfaceError = psycopg2.InterfaceError

        def close(self) -> None:
            raise AssertionError("close() called on a closed connection")

    profile = profiles.registered()["psycopg2.extensions.connection"]
    assert profile.close is not None and profile.check is not None
    profile.close(Conn())
    with pytest.raises(psycopg2.InterfaceError, match="connection already closed"):
        profile.check(Conn())
    assert broken_by(profile, psycopg2.InterfaceError())


def test_stdlib_closes_are_idempotent_on_unconnected_clients() -> None:
    for name, client in [
        ("smtplib.SMTP", smtplib.SMTP()),
        ("http.client.HTTPConnection", http.client.HTTPConnection("127.0.0.1", 9, timeout=1)),
    ]:
        close = profiles.registered()[name].close or (lambda obj: obj.close())
        close(client)
        close(client)


# --- the audit flags them -----------------------------------------------------------------


def test_the_audit_flags_pika_and_psycopg2_opened_at_import() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "safeclients", "audit", f"{FIXTURES}.amqp_pg_app"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    out = " ".join(result.stdout.split())  # the report wraps long lines
    assert f"UNSAFE {FIXTURES}.amqp_pg_app.rabbit type {PIKA}BlockingConnection" in out
    assert f"UNSAFE {FIXTURES}.amqp_pg_app.events type {PIKA}BlockingChannel" in out
    assert f"UNSAFE {FIXTURES}.amqp_pg_app.db type psycopg2.extensions.connection" in out
    assert "OPEN connection at import time: AMQP connection open" in out
    assert "OPEN connection at import time: AMQP channel 1 open" in out
    assert "OPEN connection at import time: 127.0.0.1:5432" in out
    assert " ".join(profiles.registered()[PIKA + "BlockingChannel"].reason.split()) in out
    assert " ".join(profiles.registered()["psycopg2.extensions.connection"].reason.split()) in out
    assert "use safeclients.per_thread(factory)" in out and "use safeclients.pooled(factory)" in out


def test_the_audit_flags_them_in_process() -> None:
    app = types.ModuleType("pg_app")
    conn = fake("psycopg2.extensions", "connection", closed=1)()
    vars(app).update(db=conn)
    [finding] = audit.find_unsafe([app])
    assert (finding.type_name, finding.connected) == ("psycopg2.extensions.connection", False)
    assert finding.reason == profiles.registered()["psycopg2.extensions.connection"].reason


# --- loading: entry points and --profiles ---------------------------------------------------


def test_load_entry_points_registers_a_distributions_profiles(
    restore_registry: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(ENTRY_POINTS))
    assert profiles.load_entry_points() == ["test-profiles"]
    profile = profiles.registered_as(f"{FIXTURES}.vendor_app.EntryPointClient")
    assert profile is not None and profile.suggest == "pooled"
    assert profiles.load_entry_points("no.such.group") == []


def test_an_entry_point_yielding_something_else_is_refused(
    restore_registry: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(ENTRY_POINTS))
    import tests.audit.fixtures.extra_profiles as extra

    monkeypatch.setattr(extra, "entry_point_profiles", lambda: ["not a profile"])
    with pytest.raises(TypeError, match="'test-profiles' .* yielded a str, not a"):
        profiles.load_entry_points()


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "safeclients", "audit", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


def test_the_cli_loads_entry_points_and_profiles_modules() -> None:
    import os

    app = f"{FIXTURES}.vendor_app"
    plain = cli(app)
    assert plain.returncode == 0 and "0 unsafe globals" in plain.stdout, plain.stderr
    loaded = cli(
        app,
        "--profiles",
        f"{FIXTURES}.extra_profiles",
        PYTHONPATH=os.pathsep.join([str(ENTRY_POINTS), str(REPO)]),
    )
    assert loaded.returncode == 1, loaded.stdout + loaded.stderr
    assert f"UNSAFE  {app}.imported" in loaded.stdout
    assert f"UNSAFE  {app}.from_entry_point" in loaded.stdout
    assert "use      safeclients.locked(factory)" in loaded.stdout


def test_a_profiles_module_that_fails_means_could_not_audit() -> None:
    result = cli(f"{FIXTURES}.clean_app", "--profiles", "no.such.profiles")
    assert result.returncode == 3
    assert (
        "could not audit anything: importing the --profiles module no.such.profiles "
        "raised ModuleNotFoundError"
    ) in result.stderr


def test_profiles_survive_a_dataclass_round_trip() -> None:
    # Frozen data: a policy can hold one and compare it.
    profile = SHIPPED[0]
    assert (
        dataclasses.replace(profile) == profile
        and qualname(Profile) == "safeclients.profiles.Profile"
    )


def test_probes_of_installed_drivers_see_no_connection_before_one_is_made() -> None:
    # Created without connecting (redis and pymemcache connect on first command, PyMySQL with
    # defer_connect): the audit must say "no open connection", and the probe sends nothing.
    redis = driver("redis")
    memcache = driver("pymemcache.client.base")
    pymysql = driver("pymysql")
    app = types.ModuleType("lazy_app")
    vars(app).update(
        cache=redis.Redis(host="127.0.0.1", port=9, socket_timeout=1),
        memo=memcache.Client(("127.0.0.1", 9), timeout=1),
        db=pymysql.connections.Connection(host="127.0.0.1", port=9, defer_connect=True),
    )
    found = {f.where: f for f in audit.find_unsafe([app])}
    assert {w: (f.type_name, f.connected) for w, f in found.items()} == {
        "lazy_app.cache": ("redis.client.Redis", False),
        "lazy_app.memo": ("pymemcache.client.base.Client", False),
        "lazy_app.db": ("pymysql.connections.Connection", False),
    }
    assert found["lazy_app.cache"].suggest == "safeclients.per_process(factory)"


@pytest.mark.parametrize(
    "first", ["safeclients._profile_table", "safeclients.profiles", "safeclients.audit"]
)
def test_any_module_can_be_imported_first(first: str) -> None:
    # The table imports profiles for Profile; profiles loads the table on first use.
    code = (
        f"import {first}, sqlite3\n"
        "from safeclients.profiles import profile_for\n"
        "print(profile_for(sqlite3.Connection).qualname)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stdout) == (0, "sqlite3.Connection\n"), result.stderr


def test_the_policies_use_entry_point_profiles_without_the_audit() -> None:
    """A fresh process: nobody calls load_entry_points(); the first proxy's lookup loads them."""
    import os

    code = (
        "import safeclients\n"
        "from safeclients._proxy import policy_of\n"
        f"from {FIXTURES}.vendor_app import EntryPointClient\n"
        "proxy = safeclients.per_thread(EntryPointClient)\n"
        "print(policy_of(proxy).profile.reason)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ENTRY_POINTS), str(REPO)])},
    )
    assert done.returncode == 0, done.stderr
    assert "safeclients.profiles entry point of a test distribution" in done.stdout


def test_an_unwrapped_redis_asyncio_global_is_found() -> None:
    # The ASGI proof's trap (examples/asgi/redis_app.py, form unwrapped): the audit used to list
    # no unsafe global for it. Not connected yet here (its probe reads the pool's connections).
    redis_asyncio = driver("redis.asyncio")
    app = types.ModuleType("asgi_app")
    vars(app).update(cache=redis_asyncio.Redis(host="127.0.0.1", port=9, socket_timeout=1))
    [found] = audit.find_unsafe([app])
    assert (found.type_name, found.connected) == ("redis.asyncio.client.Redis", False)
    assert found.suggest == "safeclients.per_loop(factory)"
    profile = profile_for(redis_asyncio.Redis)
    assert profile is not None and "Event loop is closed" in profile.reason
    assert profile.disconnect is not None
    assert profile.disconnect(redis_asyncio.ConnectionError("lost"), None) is False, (
        "a redis.asyncio client reconnects by itself: no error makes it dead"
    )
