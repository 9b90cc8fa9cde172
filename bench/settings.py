"""Settings of the benchmark stack: Junction's own settings, plus the benchmark's probes.

`DJANGO_SETTINGS_MODULE=bench.settings` for the web server and Junction's workers. Junction's
settings are taken unchanged from `$JUNCTION_BENCH_BASE_SETTINGS` (default `config.settings`);
on top:

- `bench.querycount` counts SQL statements, commits and Celery tasks per process (turned off
  with `JUNCTION_BENCH_QUERYCOUNT=0`, i.e. `bench.run --no-querycount`);
- under a gevent worker pool (Celery has monkey-patched the process before it loads Django),
  psycogreen makes psycopg2 yield to other greenlets while it waits on PostgreSQL. Junction
  would need the same two lines in `config/celery.py` to run on gevent; the benchmark adds them
  here so the pool comparison measures the pool, not a blocked event loop.
"""
import importlib
import os

_base = importlib.import_module(os.environ.get("JUNCTION_BENCH_BASE_SETTINGS", "config.settings"))
globals().update({name: value for name, value in vars(_base).items() if name.isupper()})


def _gevent_patched() -> bool:
    try:
        from gevent import monkey
    except ImportError:
        return False
    return monkey.is_module_patched("socket")


if _gevent_patched():
    from psycogreen.gevent import patch_psycopg

    patch_psycopg()

if os.environ.get("JUNCTION_BENCH_QUERYCOUNT", "1") != "0":
    from bench import querycount

    querycount.install()
