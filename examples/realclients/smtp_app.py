"""smtplib + an SMTP server, written as a user writes it: a module-global ``smtplib.SMTP``.

    SMTP_URL=smtp://127.0.0.1:PORT \\
    SAFECLIENTS_EXAMPLE_POLICY=pooled python -m server examples.realclients.smtp_app:application

``smtplib.SMTP`` is one command/reply session on one socket without a lock: threads sharing it
interleave commands and read each other's replies (the SMTP profile). ``SAFECLIENTS_EXAMPLE_POLICY``
picks how the global ``mailer`` is made (:func:`~examples.realclients._wsgi.policy_client`);
``pooled_check`` passes the profile's own check (``noop()`` must answer 250). Each request sends
one message to ``<token>@example.com`` whose body is the token (``sendmail`` is one call, so
one instance for the whole message) and answers the token when no recipient was refused. The
``noop()`` at import touches the client.
"""

from __future__ import annotations

import smtplib
from urllib.parse import urlsplit

from examples.realclients._wsgi import (
    env_url,
    make_application,
    policy_client,
    policy_from_env,
    profile_check,
)

POLICY = policy_from_env()
SENDER = "app@example.com"


def connect() -> smtplib.SMTP:
    url = urlsplit(env_url("SMTP_URL"))
    return smtplib.SMTP(url.hostname or "127.0.0.1", url.port or 25, timeout=5)


mailer = policy_client(POLICY, connect, profile_check("smtplib.SMTP"))
mailer.noop()  # at import, as apps do (this opens the first session, in the master)


def item(n: int, token: str) -> str:
    message = f"From: {SENDER}\r\nTo: {token}@example.com\r\nSubject: {n}\r\n\r\n{token}\r\n"
    refused = mailer.sendmail(SENDER, [f"{token}@example.com"], message)
    return token if not refused else f"refused {refused!r}"


application = make_application(
    item, client=mailer, policy=POLICY, backend_errors=(smtplib.SMTPException, OSError)
)
