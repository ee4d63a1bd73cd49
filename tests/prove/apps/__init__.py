"""WSGI apps for tests/prove, each a way of holding a client, imported by the proving ground's
master (``tests.prove.apps.<name>:app``) from the repository root."""
