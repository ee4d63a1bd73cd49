"""The trap: one module-global ``gearman.GearmanClient`` shared by every request thread.

pygearman's client keeps per-connection buffers and a job-handle table with no lock, so two
threads submitting at once read each other's replies: wrong results, ``KeyError`` on job handles,
``InvalidClientState``, closed sockets, hangs. Works fine with one thread; breaks under
``--threads``. Each server worker still builds its own client (lazily, after the fork).
"""

from examples.gearman._app import make_application, new_client

client = new_client()

application = make_application(lambda: client)
