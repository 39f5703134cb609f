"""Real faults for tests: the test database refusing connections."""

from contextlib import contextmanager

import psycopg
from django.db import connection

from mlops.background import resilience


@contextmanager
def database_down():
    """An outage of the test database (PostgreSQL): new connections are refused and every open one
    is cut (the log writer's, the pool's idle ones), except the calling test thread's own."""
    name = connection.settings_dict["NAME"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        [own_pid] = cursor.fetchone()
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> %s",
                [name, own_pid],
            )
            yield
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            resilience.reset()  # the outage is over: its failures must not keep circuits open for later tests
            # The connection pool retries failed connections with a doubling backoff (1, 2, 4, ... s), so
            # after an outage it may wait many seconds before it connects again, longer than a later
            # test's pool timeout. A new pool starts afresh; connections out of the old one (this test
            # thread's own) close when they are returned to it.
            connection.close_pool()
