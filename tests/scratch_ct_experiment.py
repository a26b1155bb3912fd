import psycopg

def test_exp(db, dsn):
    db.execute("create table t (id serial primary key, hits int not null default 0)")
    db.execute("insert into t select g from generate_series(1,10) g")
    c = psycopg.connect(dsn, autocommit=True)
    for i in range(8):
        c.execute("SELECT * FROM t WHERE id = %s", [1]).fetchone()
    db.execute("alter table t add column x int")
    for i in range(3):
        try:
            print(c.execute("SELECT * FROM t WHERE id = %s", [1]).fetchone())
        except Exception as e:
            print("ERR", type(e), e)
    db.execute("alter table t rename column hits to hits2")
    for i in range(3):
        try:
            print(c.execute("SELECT * FROM t WHERE id = %s", [1]).fetchone())
        except Exception as e:
            print("ERR", type(e), e)
    print(db.execute("select version()").fetchone())
