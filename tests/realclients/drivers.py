"""Connection factories of the real drivers, for the tests of tests/realclients (and the
``forked_parent`` script): one place for each driver's connect call and its timeouts.

Each takes a launcher's ``params`` (``examples.support.backends``) and returns a factory, the
argument a policy takes. Imports are inside: a test module imports only what it uses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def pymysql(params: dict[str, Any]) -> Callable[[], Any]:
    import pymysql  # type: ignore[import-untyped]

    return lambda: pymysql.connect(**params, connect_timeout=5, read_timeout=20)


def mysqlclient(params: dict[str, Any]) -> Callable[[], Any]:
    import MySQLdb  # type: ignore[import-untyped]

    return lambda: MySQLdb.connect(
        host=params["host"],
        port=params["port"],
        user=params["user"],
        password=params["password"],
        database=params["database"],
        connect_timeout=5,
    )


def psycopg2(params: dict[str, Any]) -> Callable[[], Any]:
    import psycopg2  # type: ignore[import-untyped]

    return lambda: psycopg2.connect(**params, connect_timeout=5)


def psycopg(params: dict[str, Any]) -> Callable[[], Any]:
    import psycopg

    return lambda: psycopg.connect(**params, connect_timeout=5)


def redis(params: dict[str, Any]) -> Callable[[], Any]:
    import redis

    return lambda: redis.Redis(**params, socket_timeout=10)


def pika(params: dict[str, Any]) -> Callable[[], Any]:
    import pika  # type: ignore[import-untyped]

    credentials = pika.PlainCredentials(params["username"], params["password"])
    parameters = pika.ConnectionParameters(
        host=params["host"], port=params["port"], credentials=credentials, socket_timeout=5
    )
    return lambda: pika.BlockingConnection(parameters)


def pymemcache(params: dict[str, Any]) -> Callable[[], Any]:
    from pymemcache.client.base import Client

    return lambda: Client((params["host"], params["port"]), connect_timeout=5, timeout=5)


def smtplib(params: dict[str, Any]) -> Callable[[], Any]:
    import smtplib

    return lambda: smtplib.SMTP(params["host"], params["port"], timeout=10)


def ftplib(params: dict[str, Any]) -> Callable[[], Any]:
    import ftplib

    def connect() -> Any:
        ftp = ftplib.FTP()
        ftp.connect(params["host"], params["port"], timeout=10)
        ftp.login()
        return ftp

    return connect


def query(connection: Any, sql: str) -> list[tuple[Any, ...]]:
    """Run ``sql`` on a cursor of ``connection`` (a proxy or a raw DB-API connection) and return
    its rows ([] for a statement without a result); the cursor is closed either way."""
    cur = connection.cursor()
    try:
        cur.execute(sql)
        return list(cur.fetchall()) if cur.description else []
    finally:
        cur.close()


FACTORIES: dict[str, Callable[[dict[str, Any]], Callable[[], Any]]] = {
    "pymysql": pymysql,
    "mysqlclient": mysqlclient,
    "psycopg2": psycopg2,
    "psycopg": psycopg,
    "redis": redis,
    "pika": pika,
    "pymemcache": pymemcache,
    "smtplib": smtplib,
    "ftplib": ftplib,
}
MYSQL = {"pymysql": pymysql, "mysqlclient": mysqlclient}
POSTGRES = {"psycopg2": psycopg2, "psycopg": psycopg}
