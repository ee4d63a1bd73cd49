"""Benchmarks: what safeclients costs next to the hand-written ways of being safe.

Run everything with ``.venv/bin/python -m benchmarks`` from the repository root
(``--quick`` for a short run, ``--only micro,contended,cursor,memory,e2e`` to
pick sections). It prints markdown tables with ratios and rewrites
``docs/benchmarks.md``, ``docs/micro.png`` and ``docs/e2e.png``.

The machine is shared and noisy, so every table compares variants measured in
the same run, interleaved round-robin (each repeat measures every variant once,
in a rotated order), and reports the minimum and the median of the repeats. Only
ratios from one run mean anything; absolute nanoseconds move from run to run.

Modules:
  harness    compiling and timing a statement, interleaved repeats
  baselines  the fake client and the hand-written alternatives (locals, locks, pools)
  cases      the per-call rows: statement, setup, and the fair baseline of each
  micro      the per-call table (wrapt C mode in-process, pure-Python mode in a child)
  contended  the same calls from 8 threads at once
  cursor     the DB-API cursor cycle on sqlite3, raw and through each policy
  memory     per_thread after many exited threads (run in a child process)
  e2e        the Gearman example apps on our server and uWSGI under load
  report     tables as markdown, targets as PASS/FAIL
  charts     the PNG charts (matplotlib, Agg backend)

Separately, ``benchmarks/server_bench.py`` compares our server with gunicorn and uWSGI under wrk.
"""
