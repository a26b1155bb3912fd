"""Hand-written catalog facts shared by the plan tests: what the catalog would report for
a few small tables, written out so that each plan is built without a server."""

from __future__ import annotations

from pgonline.catalog.facts import ColumnFacts, ConstraintFacts, IndexFacts, ServerFacts, TableFacts

PG18 = ServerFacts(version_num=180001)
PG15 = ServerFacts(version_num=150010)
SERVERS = {"pg18": PG18, "pg15": PG15}


def index(table: str, name: str, *columns: str, unique: bool = False, primary: bool = False,
          valid: bool = True) -> IndexFacts:
    """An index as pg_get_indexdef renders it, on ``public.<table>``."""
    definition = (f"CREATE {'UNIQUE ' if unique or primary else ''}INDEX {name} ON public.{table} "
                  f"USING btree ({', '.join(columns)})")
    return IndexFacts("public", name, columns, unique=unique or primary, primary=primary,
                      valid=valid, has_expressions=False, predicate=None, definition=definition)


USERS_PKEY = index("users", "users_pkey", "id", primary=True)

# users (id bigint PRIMARY KEY, email text, name text NOT NULL, created_at timestamptz NOT NULL
#        DEFAULT now()), 1M rows
USERS = TableFacts(
    schema="public", name="users", oid=16384,
    columns=(
        ColumnFacts("id", "bigint", not_null=True),
        ColumnFacts("email", "text", not_null=False),
        ColumnFacts("name", "text", not_null=True),
        ColumnFacts("created_at", "timestamp with time zone", not_null=True, default="now()"),
    ),
    primary_key=("id",), estimated_rows=1_000_000, size_bytes=120 * 1024 * 1024,
    indexes=(USERS_PKEY,),
    constraints=(ConstraintFacts("users_pkey", "p", validated=True,
                                 definition="PRIMARY KEY (id)", index_name="users_pkey"),),
)

# orders (id bigint PRIMARY KEY, user_id bigint, total numeric(12,2)), no index on user_id
ORDERS = TableFacts(
    schema="public", name="orders", oid=16400,
    columns=(
        ColumnFacts("id", "bigint", not_null=True),
        ColumnFacts("user_id", "bigint", not_null=False),
        ColumnFacts("total", "numeric(12,2)", not_null=False),
    ),
    primary_key=("id",), estimated_rows=5_000_000, size_bytes=400 * 1024 * 1024,
    indexes=(index("orders", "orders_pkey", "id", primary=True),),
)

# events (event_id uuid NOT NULL, payload jsonb), no primary key yet
EVENTS = TableFacts(
    schema="public", name="events", oid=16420,
    columns=(ColumnFacts("event_id", "uuid", not_null=True), ColumnFacts("payload", "jsonb", False)),
    primary_key=(), estimated_rows=2_000_000, size_bytes=300 * 1024 * 1024,
)

# events (id bigint, kind text NOT NULL, hits int, PRIMARY KEY (id, kind)) PARTITION BY RANGE (id);
# its partition tree is built by the test that needs it
EVENTS_PARTITIONED = TableFacts(
    schema="public", name="events", oid=16990,
    columns=(ColumnFacts("id", "bigint", not_null=True), ColumnFacts("kind", "text", True),
             ColumnFacts("hits", "integer", not_null=False)),
    primary_key=("id", "kind"), estimated_rows=3_000_000, size_bytes=500 * 1024 * 1024,
)
