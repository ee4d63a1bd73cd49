"""Example apps over real clients (PyMySQL, psycopg2, pika, redis-py), written as a user would.

Each ``<client>_app.py`` keeps one module-global client, chosen by ``SAFECLIENTS_EXAMPLE_POLICY``
(``unsafe``: the undecorated global; ``per_thread``, ``locked``, ``pooled``: a decorated factory),
touches it at import, and answers ``GET /item?n=N&token=T`` with what the backend echoed for
this request. :mod:`examples.realclients.prove` serves each app under our server and real uWSGI,
checks every answer, kills the backend's connections and checks again.
"""
