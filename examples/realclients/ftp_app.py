"""ftplib + an FTP server, written as a user writes it: a module-global ``ftplib.FTP`` session.

    FTP_URL=ftp://127.0.0.1:PORT \\
    SAFECLIENTS_EXAMPLE_POLICY=pooled python -m server examples.realclients.ftp_app:application

``ftplib.FTP`` is one control connection, a command and its reply at a time, without a lock
(the FTP profile). ``SAFECLIENTS_EXAMPLE_POLICY`` picks how the global ``ftp`` is made
(:func:`~examples.realclients._wsgi.policy_client`); ``pooled_check`` passes the profile's own
check (``NOOP`` must answer 2xx). Each request stores ``<token>.txt`` holding the token (anonymous
login, passive mode) and reads it back; the answer is what was read. The ``pwd()`` at import
touches the client.
"""

from __future__ import annotations

import ftplib
import io
from urllib.parse import urlsplit

from examples.realclients._wsgi import (
    env_url,
    make_application,
    policy_client,
    policy_from_env,
    profile_check,
)

POLICY = policy_from_env()


def connect() -> ftplib.FTP:
    url = urlsplit(env_url("FTP_URL"))
    ftp = ftplib.FTP()
    ftp.connect(url.hostname or "127.0.0.1", url.port or 21, timeout=5)
    ftp.login()
    return ftp


ftp = policy_client(POLICY, connect, profile_check("ftplib.FTP"))
ftp.pwd()  # at import, as apps do (this opens the first session, in the master)


def item(n: int, token: str) -> str:
    name = f"{token}.txt"
    ftp.storbinary(f"STOR {name}", io.BytesIO(token.encode()))
    chunks: list[bytes] = []
    ftp.retrbinary(f"RETR {name}", chunks.append)
    return b"".join(chunks).decode(errors="replace")


application = make_application(
    item, client=ftp, policy=POLICY, backend_errors=(ftplib.Error, OSError, EOFError)
)
