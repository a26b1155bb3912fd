"""``pg_stat_activity`` watchers: long transactions and the number of active sessions.

Why pause for somebody else's long transaction?  While it is open, VACUUM
cannot remove the dead row versions every backfill batch leaves behind (the
table bloats for as long as the transaction lives), and the next DDL step's
lock request would queue behind whatever locks it holds.  Waiting costs the
backfill a little time; not waiting costs the application bloat and stalls.

Our own sessions are never counted: they carry ``application_name`` =
``pgonline`` (see :mod:`pgonline.connection`), and the session asking is
excluded by pid.  Only client backends count (not autovacuum, walsenders or
background workers).
"""

from __future__ import annotations

from pgonline.connection import APPLICATION_NAME, Conn

_LONG_XACT_SQL = """
SELECT pid, coalesce(usename, '?'), coalesce(nullif(application_name, ''), '-'), state,
       extract(epoch FROM now() - xact_start)::float8 AS age,
       left(regexp_replace(query, '\\s+', ' ', 'g'), 120)
  FROM pg_stat_activity
 WHERE xact_start IS NOT NULL
   AND backend_type = 'client backend'
   AND datname = current_database()
   AND pid <> pg_backend_pid()
   AND application_name IS DISTINCT FROM %(ours)s
   AND now() - xact_start > make_interval(secs => %(max_age)s)
 ORDER BY xact_start
 LIMIT 1
"""


class LongTransactions:
    """Pause while a transaction (active or idle in transaction) is older than ``max_age_s``.

    Only sessions of the same database count: those are the ones whose
    snapshots hold back VACUUM of our table and whose locks our DDL meets.
    """

    def __init__(self, max_age_s: float) -> None:
        self.max_age_s = max_age_s

    def __repr__(self) -> str:
        return f"transactions younger than {self.max_age_s:g}s"

    async def reason(self, conn: Conn) -> str | None:
        cur = await conn.execute(_LONG_XACT_SQL, {"ours": APPLICATION_NAME,
                                                  "max_age": self.max_age_s})
        row = await cur.fetchone()
        if row is None:
            return None
        pid, user, app, state, age, query = row
        return (f"long transaction: pid {pid} ({user}, {app}, {state}) open for {age:.0f}s "
                f"(> --max-xact-age {self.max_age_s:g}s): {query}")


_ACTIVE_SQL = """
SELECT count(*)
  FROM pg_stat_activity
 WHERE state = 'active'
   AND backend_type = 'client backend'
   AND pid <> pg_backend_pid()
   AND application_name IS DISTINCT FROM %(ours)s
"""


class ActiveSessions:
    """Pause while more than ``limit`` client sessions (server-wide) are running a query.

    Active backends are a cheap, version-independent load signal: when the
    application is already saturating the server, the backfill steps aside.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def __repr__(self) -> str:
        return f"at most {self.limit} active sessions"

    async def reason(self, conn: Conn) -> str | None:
        cur = await conn.execute(_ACTIVE_SQL, {"ours": APPLICATION_NAME})
        row = await cur.fetchone()
        n = int(row[0]) if row else 0
        if n > self.limit:
            return f"load: {n} active sessions (> --max-active-sessions {self.limit})"
        return None
