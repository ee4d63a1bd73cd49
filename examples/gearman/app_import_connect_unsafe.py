"""The fork trap: a global client that CONNECTS AT IMPORT TIME, in the master, before the fork.

Under uWSGI's default (non-lazy) loading and gunicorn ``--preload`` the app module is imported
once in the master; every worker inherits the same connected socket. ``/conn`` then reports the
same local port from two worker pids: both workers write requests into, and read replies from,
one TCP connection, and gearmand sees a single client. (Under lazy loading each worker imports
the module itself and the trap does not show.)
"""

from examples.gearman._app import connect_now, make_application, new_client

client = connect_now(new_client())

application = make_application(lambda: client)
