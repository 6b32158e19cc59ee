#!/usr/bin/python3
"""Generate tests/sql_corpus/psycopg.jsonl: SQL as psycopg2 and psycopg 3 send it.

    /usr/bin/python3 tests/sql_corpus/gen_psycopg.py [--out FILE] [--seed S] [--rounds N]

Uses PGHOST/PGPORT(/PGUSER/PGPASSWORD) when given, else starts a private cluster with
scripts/pgtmp.sh and stops it at the end. Everything runs for real against a fresh
database through gen_common.WireTap, which records the text of every Query and Parse
message, so the corpus holds:
  - psycopg2 queries with literals inlined client-side (execute with parameters,
    execute_values, copy_from/copy_expert, named cursors);
  - psycopg 3 server-side-binding texts ($1..$n in Parse), executemany, pipeline,
    prepared statements, COPY, and ClientCursor queries (psycopg 3's own inlining);
  - hand-written statements rich in lexical edge cases (E'' and U&'' strings, bit and
    hex strings, dollar quoting, typed literals, arrays, operators, numbers in every
    spelling, both comment styles, sqlcommenter tags), DDL, SET/SHOW and transaction
    control, with randomized values so that same-shape statements come in numbers.
Exact duplicates are dropped; every line is checked with libpg_query.
"""
import argparse
import datetime as dt
import json
import os
import random
import uuid
from decimal import Decimal

import gen_common

DB_NAME = "pgmedic_corpus_psycopg"

WORDS = ["alpha", "O'Brien", "it''s", "back\\slash", "C:\\dir\\file", "naïve", "Straße", "日本",
         "Привет", "😀", "📚🎉", "tab\tin", "new\nline", "100%", "%s", "%(x)s", "$1", "$$", "$q$",
         "semi;colon", "-- dash", "/* c */", "\"dq\"", "", " ", "NULL", "é\\u00e9", "\\x41"]
REGEXES = ["^al", "ph+a", "[0-9]{2}", "\\d+", "é", "(?i)o'b"]
BOOLS = ["TRUE", "FALSE", "true", "NULL", "NOT true", "true AND NOT false", "'t'::boolean", "'yes'::bool"]
ZONES = ["UTC", "+02:00", "-05:00", "+05:30", "-09:30", "+13:45", "Europe/Paris", "America/New_York"]


class Rand:
    def __init__(self, seed):
        self.r = random.Random(seed)

    def word(self):
        return self.r.choice(WORDS)

    def text(self):
        return "".join(self.r.choice(WORDS) for _ in range(self.r.randint(1, 3)))

    def int(self, lo=-100000, hi=100000):
        return self.r.randint(lo, hi)

    def dec(self):
        return Decimal(self.r.randint(-999999, 999999)) / Decimal(10 ** self.r.randint(0, 4))

    def float(self):
        return self.r.choice([self.r.uniform(-1e6, 1e6), self.r.random() / 1000, 1.5e-3, 2.5e10,
                              float("inf"), float("-inf"), float("nan"), 0.0, -0.0, 1e-300])

    def date(self):
        return dt.date(1970, 1, 1) + dt.timedelta(days=self.r.randint(-3650, 25000))

    def dt(self, aware=True):
        d = dt.datetime(2000, 1, 1) + dt.timedelta(seconds=self.r.randint(0, 30 * 365 * 86400),
                                                    microseconds=self.r.choice([0, self.r.randint(0, 999999)]))
        if aware:
            off = self.r.choice([0, 120, -300, 330, -570, 825])
            d = d.replace(tzinfo=dt.timezone(dt.timedelta(minutes=off)))
        return d

    def ints(self, n=None):
        n = self.r.choice([1, 2, 3, 5, 8, 13, 30]) if n is None else n
        return [self.r.randint(-50, 5000) for _ in range(n)]

    def json(self):
        return {"k": self.word(), "n": self.int(), "f": self.r.choice([1.5, -0.25, None, True]),
                "list": self.ints(self.r.randint(0, 4)), "nested": {"emoji": "😀", "q": "it's"}}

    # SQL literal spellings (hand-written SQL) -------------------------------------------

    def sql_str(self, s=None):
        s = self.word() if s is None else s
        return "'" + s.replace("'", "''") + "'"

    def e_str(self):
        parts = []
        for _ in range(self.r.randint(1, 4)):
            parts.append(self.r.choice([
                "abc", "\\n", "\\t", "\\\\", "\\'", "''", "\\x41", "\\101", "\\u00e9", "\\U0001F600",
                "\\b", "\\r", "it\\'s", "naïve", "😀", "\\\\server\\\\share", "%", "\\\"",
            ]))
        return "E'" + "".join(parts) + "'"

    def u_str(self):
        kind = self.r.randint(0, 2)
        if kind == 0:
            return "U&'d\\0061t\\+000061'"
        if kind == 1:
            return "U&'" + "".join(self.r.choice(["\\00e9", "\\+01F600", "x", "\\\\", "''", "\\0041"]) for _ in range(self.r.randint(1, 5))) + "'"
        return "U&'!00e9!+01F4DA" + self.r.choice(["a", "b", "''"]) + "' UESCAPE '!'"

    def number(self):
        return self.r.choice([
            str(self.int()), str(self.int(0, 10**6)), f"{self.r.randint(0, 999)}.{self.r.randint(0, 99):02d}",
            f".{self.r.randint(1, 999)}", f"{self.r.randint(1, 99)}.", f"{self.r.randint(1, 9)}.{self.r.randint(0, 9)}e-{self.r.randint(1, 9)}",
            f"{self.r.randint(1, 9)}E+{self.r.randint(1, 20)}", f"{self.r.randint(1, 9)}e{self.r.randint(1, 5)}",
            str(self.r.randint(2**31, 2**62)), str(10**self.r.randint(19, 30) + self.r.randint(0, 99)),
            f"-{self.r.randint(1, 1000)}", f"- {self.r.randint(1, 1000)}", f"+{self.r.randint(1, 1000)}",
            str(self.r.randint(0, 9)), "0", "00042", "0.0",
        ])

    def bits(self, n=None):
        return "".join(self.r.choice("01") for _ in range(n or self.r.randint(1, 12)))

    def hexs(self):
        return "".join(self.r.choice("0123456789ABCDEFabcdef") for _ in range(self.r.randint(1, 8)))


# ------------------------------------------------------------------------------ schema

SETUP = [
    "DROP TABLE IF EXISTS order_items, items, events, accounts CASCADE",
    "DROP TYPE IF EXISTS mood CASCADE",
    "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'it''s complicated')",
    """CREATE TABLE items (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    price numeric(10,2) NOT NULL DEFAULT 0.00,
    qty integer DEFAULT 1 CHECK (qty >= 0),
    tags text[] DEFAULT '{}',
    scores integer[],
    data jsonb DEFAULT '{}'::jsonb,
    flags bit(8) DEFAULT B'00000000',
    raw bytea,
    created timestamptz NOT NULL DEFAULT now(),
    due date,
    at_time time,
    span interval,
    ratio double precision,
    ok boolean,
    feeling mood,
    uid uuid
)""",
    "CREATE TABLE accounts (id integer PRIMARY KEY, owner text UNIQUE, balance numeric(12,2) NOT NULL DEFAULT 0)",
    """CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, kind varchar(32), payload json, "when" timestamp without time zone, "Mixed Case" text)""",
    "CREATE TABLE order_items (order_id integer NOT NULL, item_id bigint REFERENCES items (id) ON DELETE CASCADE, amount numeric(10,2), PRIMARY KEY (order_id, item_id))",
    "CREATE INDEX items_name_idx ON items (lower(name))",
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS items_tags_gin ON items USING gin (tags)",
    "CREATE INDEX items_data_path ON items USING gin (data jsonb_path_ops)",
    "CREATE UNIQUE INDEX items_uid_key ON items (uid) WHERE uid IS NOT NULL",
    "CREATE INDEX items_created_brin ON items USING brin (created) WITH (pages_per_range = 32)",
    "CREATE INDEX items_name_pattern ON items (name text_pattern_ops) INCLUDE (price)",
    "ALTER TABLE items ADD COLUMN note varchar(200) DEFAULT 'n/a'",
    "ALTER TABLE items ALTER COLUMN note SET DEFAULT E'none\\tyet'",
    "ALTER TABLE items ALTER COLUMN qty SET NOT NULL",
    "ALTER TABLE items ADD CONSTRAINT items_price_positive CHECK (price >= 0) NOT VALID",
    "ALTER TABLE items VALIDATE CONSTRAINT items_price_positive",
    "ALTER TABLE accounts RENAME COLUMN owner TO owner_name",
    "ALTER TABLE accounts ALTER COLUMN balance TYPE numeric(14,2) USING balance::numeric(14,2)",
    "ALTER TABLE events SET (fillfactor = 90)",
    "COMMENT ON TABLE items IS 'Things we sell; it''s a demo'",
    "COMMENT ON COLUMN items.price IS E'Unit price in \\u20AC (euros)\\nrounded to cents'",
    "COMMENT ON COLUMN items.data IS $$free-form JSON, e.g. {\"a\": 1}$$",
    "COMMENT ON INDEX items_name_idx IS NULL",
    """CREATE OR REPLACE FUNCTION add_item(p_name text, p_price numeric DEFAULT 0) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    new_id bigint;
BEGIN
    -- a comment inside the body; 'quotes' and ; are fine here
    INSERT INTO items (name, price) VALUES (p_name, p_price) RETURNING id INTO new_id;
    RAISE NOTICE 'added % (%)', p_name, new_id;
    RETURN new_id;
END;
$$""",
    """CREATE OR REPLACE FUNCTION price_band(p numeric) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT
    AS $fn$ SELECT CASE WHEN p < 10 THEN 'cheap' WHEN p < 100 THEN 'mid' ELSE 'it''s $$ expensive' END $fn$""",
    """CREATE OR REPLACE FUNCTION touch() RETURNS trigger AS $body$
BEGIN
  NEW.created := now(); /* nested $x$ not closed here */
  RETURN NEW;
END
$body$ LANGUAGE plpgsql""",
    "CREATE TRIGGER items_touch BEFORE UPDATE OF name ON items FOR EACH ROW WHEN (OLD.name IS DISTINCT FROM NEW.name) EXECUTE FUNCTION touch()",
    "CREATE OR REPLACE VIEW cheap_items AS SELECT id, name, price FROM items WHERE price < 10.00 WITH LOCAL CHECK OPTION",
    "CREATE MATERIALIZED VIEW IF NOT EXISTS item_stats AS SELECT count(*) AS n, avg(price) AS avg_price FROM items WITH NO DATA",
    "REFRESH MATERIALIZED VIEW item_stats",
    "CREATE SEQUENCE IF NOT EXISTS ticket_seq START WITH 1000 INCREMENT BY 5 MINVALUE 1000 NO CYCLE",
    "CREATE TEMP TABLE scratch (k int, v text) ON COMMIT PRESERVE ROWS",
    "CREATE UNLOGGED TABLE IF NOT EXISTS cache_entries (key text PRIMARY KEY, value bytea, expires timestamptz)",
    "CREATE TABLE IF NOT EXISTS measurements (city_id int NOT NULL, logdate date NOT NULL, peaktemp int) PARTITION BY RANGE (logdate)",
    "CREATE TABLE IF NOT EXISTS measurements_2024 PARTITION OF measurements FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
    "CREATE SCHEMA IF NOT EXISTS \"Reporting\"",
    "CREATE TABLE IF NOT EXISTS \"Reporting\".\"Daily Totals\" (\"Day\" date PRIMARY KEY, \"Total €\" numeric)",
    "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'reader') THEN CREATE ROLE reader NOLOGIN; END IF; END $$",
    "GRANT SELECT ON items, accounts TO reader",
    "GRANT USAGE ON SCHEMA \"Reporting\" TO reader",
    "REVOKE INSERT, UPDATE ON items FROM PUBLIC",
    "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO reader",
    "CREATE POLICY items_reader ON items FOR SELECT TO reader USING (price < 1000)",
    "CREATE STATISTICS IF NOT EXISTS items_stats (dependencies) ON price, qty FROM items",
    "INSERT INTO accounts (id, owner_name, balance) SELECT g, 'owner ' || g, g * 10.5 FROM generate_series(1, 100) AS g",
]

TEARDOWN = [
    "ANALYZE items",
    "ANALYZE VERBOSE accounts (balance)",
    "VACUUM (ANALYZE, VERBOSE) items",
    "VACUUM FULL accounts",
    "CLUSTER accounts USING accounts_pkey",
    "REINDEX TABLE accounts",
    "CHECKPOINT",
    "TRUNCATE ONLY cache_entries",
    "TRUNCATE TABLE order_items, events RESTART IDENTITY CASCADE",
    "DROP TRIGGER IF EXISTS items_touch ON items",
    "DROP FUNCTION IF EXISTS price_band(numeric)",
    "DROP VIEW IF EXISTS cheap_items",
    "DROP MATERIALIZED VIEW IF EXISTS item_stats",
    "DROP INDEX CONCURRENTLY IF EXISTS items_created_brin",
    "DROP SEQUENCE ticket_seq",
    "DROP POLICY IF EXISTS items_reader ON items",
    "DROP TABLE IF EXISTS measurements CASCADE",
    "DROP SCHEMA \"Reporting\" CASCADE",
    "DISCARD ALL",
]

SESSION = [
    "SET search_path TO public, \"Reporting\"",
    "SET search_path = \"$user\", public",
    "SET statement_timeout = '5s'",
    "SET statement_timeout TO 0",
    "SET lock_timeout = 1500",
    "SET SESSION work_mem = '64MB'",
    "SET TIME ZONE 'Europe/Paris'",
    "SET TIME ZONE INTERVAL '+05:30' HOUR TO MINUTE",
    "SET TIME ZONE LOCAL",
    "SET timezone = 'UTC'",
    "SET application_name = 'shop.views.book_list'",
    "SET client_min_messages TO warning",
    "SET datestyle = 'ISO, DMY'",
    "SET extra_float_digits = 3",
    "SET enable_seqscan = off",
    "SET standard_conforming_strings = on",
    "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED",
    "SET ROLE NONE",
    "SET SESSION AUTHORIZATION DEFAULT",
    "RESET enable_seqscan",
    "RESET ALL",
    "SHOW search_path",
    "SHOW TIME ZONE",
    "SHOW server_version",
    "SHOW ALL",
    "SHOW transaction_isolation",
    "SELECT set_config('application_name', 'pgmedic corpus', false)",
    "SELECT current_setting('server_version_num')::int",
    "LISTEN item_changes",
    "NOTIFY item_changes",
    "NOTIFY item_changes, 'id=42; it''s new'",
    "SELECT pg_notify('item_changes', '{\"id\": 7}')",
    "UNLISTEN *",
    "SELECT pg_advisory_lock(4242)",
    "SELECT pg_advisory_unlock_all()",
    "SELECT pg_try_advisory_xact_lock(hashtext('job:nightly'))",
]

TX_SCRIPTS = [
    ["BEGIN", "SELECT 1", "COMMIT"],
    ["BEGIN ISOLATION LEVEL SERIALIZABLE", "SELECT count(*) FROM items", "COMMIT"],
    ["BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY", "SELECT sum(balance) FROM accounts", "END"],
    ["START TRANSACTION READ WRITE", "SAVEPOINT sp1", "UPDATE accounts SET balance = balance WHERE id = 1",
     "ROLLBACK TO SAVEPOINT sp1", "RELEASE SAVEPOINT sp1", "COMMIT"],
    ["BEGIN WORK", "SAVEPOINT \"Quoted SP\"", "ROLLBACK TO \"Quoted SP\"", "RELEASE \"Quoted SP\"", "ABORT"],
    ["BEGIN", "SET LOCAL statement_timeout = '250ms'", "SET LOCAL search_path = pg_catalog, public",
     "SELECT now()", "COMMIT AND NO CHAIN"],
    ["BEGIN", "LOCK TABLE accounts IN SHARE ROW EXCLUSIVE MODE NOWAIT", "ROLLBACK"],
    ["BEGIN", "DECLARE c1 SCROLL CURSOR FOR SELECT id, owner_name FROM accounts ORDER BY id",
     "FETCH 5 FROM c1", "FETCH PRIOR FROM c1", "FETCH ABSOLUTE 10 FROM c1", "MOVE FORWARD ALL IN c1",
     "FETCH BACKWARD 2 FROM c1", "CLOSE c1", "COMMIT"],
    ["BEGIN", "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, DEFERRABLE", "SET CONSTRAINTS ALL DEFERRED",
     "SELECT 1", "ROLLBACK AND NO CHAIN"],
    ["PREPARE get_acct (int) AS SELECT * FROM accounts WHERE id = $1", "EXECUTE get_acct(1)",
     "EXECUTE get_acct(-7)", "EXPLAIN EXECUTE get_acct(3)", "DEALLOCATE get_acct"],
    ["PREPARE upd_acct (numeric, int) AS UPDATE accounts SET balance = balance + $1 WHERE id = $2",
     "EXECUTE upd_acct(10.50, 3)", "EXECUTE upd_acct(-2.25, 4)", "DEALLOCATE PREPARE ALL"],
]

# Hand-written statement shapes with random values: f(rand) -> SQL text.
def hand_shapes():
    return [
        lambda v: f"SELECT {v.e_str()} AS e, length({v.e_str()})",
        lambda v: f"SELECT {v.u_str()} AS u",
        lambda v: (lambda n: f"SELECT B'{v.bits()}' AS b, X'{v.hexs()}' AS x, B'{v.bits(n)}' | B'{v.bits(n)}'::bit varying, B'{v.bits(n)}' # B'{v.bits(n)}'")(v.r.randint(1, 12)),
        lambda v: f"SELECT ARRAY[{', '.join(map(str, v.ints()))}] @> ARRAY[{v.int(0, 50)}]",
        lambda v: f"SELECT '{{{','.join(map(str, v.ints()))}}}'::int[] && '{{{v.int(0, 9)},{v.int(0, 9)}}}'::integer[]",
        lambda v: f"SELECT ARRAY[{', '.join(v.sql_str() for _ in range(v.r.randint(1, 5)))}]::text[] || {v.sql_str()}::text",
        lambda v: f"SELECT DATE '{v.date().isoformat()}' + {v.int(-400, 400)} AS d",
        lambda v: f"SELECT TIMESTAMPTZ '{v.dt().isoformat(sep=' ')}' AT TIME ZONE '{v.r.choice(ZONES)}'",
        lambda v: f"SELECT TIMESTAMP '{v.dt(aware=False).isoformat(sep=' ')}', TIME '{v.r.randint(0, 23):02d}:{v.r.randint(0, 59):02d}:00'",
        lambda v: f"SELECT now() - interval '{v.r.randint(1, 90)} {v.r.choice(['day', 'days', 'hours', 'minutes', 'mons', 'years'])}'",
        lambda v: f"SELECT INTERVAL '{v.r.randint(1, 12)}' MONTH, '{v.r.randint(1, 9)} years {v.r.randint(1, 11)} mons'::interval",
        lambda v: f"SELECT {v.number()}::numeric(10,2), CAST({v.number()} AS double precision), {v.number()}::real",
        lambda v: f"SELECT {v.number()} + {v.number()} * {v.number()} AS n",
        lambda v: f"SELECT {v.r.choice(['1.5e-3', '.5', '5.', '1e10', '2.5E+3', '0.000001', '1000'])} * {v.number()}",
        lambda v: f"SELECT data ->> {v.sql_str('k')} AS k, data -> 'list' -> {v.r.randint(0, 3)}, data #>> '{{nested,emoji}}' FROM items WHERE data @> {v.sql_str(json.dumps({'n': v.int()}))}::jsonb",
        lambda v: f"SELECT {v.sql_str(json.dumps(v.json(), ensure_ascii=v.r.choice([True, False])))}::jsonb #> '{{nested}}' ? 'q'",
        lambda v: f"SELECT jsonb_build_object('a', {v.int()}, 'b', {v.sql_str()}, 'c', {v.r.choice(['true', 'false', 'NULL'])}) ?| ARRAY['a', 'z']",
        lambda v: f"SELECT id FROM items WHERE name ~* {v.sql_str(v.r.choice(REGEXES))} OR name !~ '^x' OR name ILIKE {v.sql_str('%' + v.word() + '%')} ESCAPE '\\'",
        lambda v: f"SELECT id FROM items WHERE note IS DISTINCT FROM {v.sql_str()} AND ok IS NOT DISTINCT FROM {v.r.choice(['true', 'false', 'NULL'])}",
        lambda v: f"SELECT id FROM items WHERE price BETWEEN SYMMETRIC {v.number()} AND {v.number()}",
        lambda v: f"SELECT id FROM items WHERE qty NOT BETWEEN {v.int(-5, 5)} AND {v.int(5, 500)} AND created IS NOT NULL",
        lambda v: f"SELECT {v.sql_str()} || {v.sql_str()} || {v.int()} AS s, {v.sql_str()} ^@ 'al'",
        lambda v: f"SELECT id, name FROM items /* block comment with 'quote' and {v.word().replace('*/', '')} */ WHERE id = {v.int(1, 500)} -- trailing {v.r.randint(0, 999)}\n",
        lambda v: f"-- leading line comment {v.r.randint(0, 999)}\nSELECT count(*) FROM items WHERE qty > {v.int(0, 9)}",
        lambda v: f"SELECT /* nested /* comment */ still comment */ {v.int()} AS x",
        lambda v: f"SELECT name FROM items WHERE id = {v.int(1, 500)} /*controller='{v.r.choice(['book_list', 'book_detail', 'author_detail'])}',framework='django%3A4.2.21',route='%2Fbooks%2F{v.r.choice(['', '%3Cint%3Apk%3E%2F'])}'*/",
        lambda v: f"SELECT count(*) FROM items WHERE price > {v.number()} /*action='index',application='shop',controller='shop.views.book_list',db_driver='django.db.backends.postgresql',route='%2Fbooks%2F',traceparent='00-{v.hexs().lower():0>32}-{v.hexs().lower():0>16}-01'*/",
        lambda v: f"WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < {v.int(1, 100)}) SELECT sum(n) FROM t",
        lambda v: f"WITH cheap AS MATERIALIZED (SELECT id, price FROM items WHERE price < {v.number()}), top AS NOT MATERIALIZED (SELECT * FROM cheap ORDER BY price DESC LIMIT {v.int(1, 50)}) SELECT * FROM top",
        lambda v: f"WITH moved AS (DELETE FROM events WHERE \"when\" < '{v.dt(aware=False).isoformat(sep=' ')}' RETURNING *) INSERT INTO events (kind, payload, \"when\") SELECT 'archived', payload, \"when\" FROM moved",
        lambda v: f"SELECT id, price, row_number() OVER w, rank() OVER (PARTITION BY qty ORDER BY price DESC), lag(price, {v.int(1, 5)}) OVER w, sum(price) OVER (ORDER BY id ROWS BETWEEN {v.int(1, 9)} PRECEDING AND CURRENT ROW) FROM items WINDOW w AS (ORDER BY created) LIMIT {v.int(1, 100)}",
        lambda v: f"SELECT percentile_cont({v.r.choice(['0.5', '0.95', '0.99', '.25'])}) WITHIN GROUP (ORDER BY price), count(*) FILTER (WHERE qty > {v.int(0, 9)}) FROM items",
        lambda v: f"SELECT a.id, x.* FROM accounts a CROSS JOIN LATERAL (SELECT i.id AS item_id, i.price FROM items i WHERE i.price < a.balance ORDER BY i.price DESC LIMIT {v.int(1, 5)}) AS x WHERE a.id = {v.int(1, 100)}",
        lambda v: f"SELECT * FROM accounts a LEFT JOIN LATERAL generate_series(1, {v.int(1, 9)}) AS g(n) ON true WHERE a.balance > {v.number()}",
        lambda v: f"SELECT * FROM unnest(ARRAY[{', '.join(map(str, v.ints()))}]) WITH ORDINALITY AS t(v, i)",
        lambda v: f"SELECT * FROM (VALUES {', '.join(f'({v.int()}, {v.sql_str()})' for _ in range(v.r.randint(1, 6)))}) AS t(a, b)",
        lambda v: f"INSERT INTO accounts (id, owner_name, balance) VALUES ({v.int(1000, 10**6)}, {v.sql_str(v.text())}, {v.dec()}) ON CONFLICT (id) DO UPDATE SET balance = accounts.balance + EXCLUDED.balance RETURNING id, balance",
        lambda v: f"INSERT INTO accounts VALUES ({v.int(1000, 10**6)}, NULL, {v.number()}) ON CONFLICT DO NOTHING",
        lambda v: f"UPDATE accounts SET balance = balance + {v.int(-5000, 5000)} WHERE id = {v.int(1, 100)} RETURNING balance",
        lambda v: f"UPDATE items AS i SET price = i.price * 1.{v.r.randint(0, 99):02d} FROM accounts a WHERE a.id = i.qty AND a.balance > {v.number()}",
        lambda v: f"DELETE FROM events USING items WHERE events.id = items.id AND items.price < {v.number()} RETURNING events.id",
        lambda v: f"SELECT CASE WHEN price < {v.number()} THEN 'low' WHEN price < {v.number()} THEN 'mid' ELSE {v.sql_str()} END, COALESCE(note, {v.sql_str()}), NULLIF(qty, {v.int(0, 3)}) FROM items",
        lambda v: f"SELECT id FROM items WHERE id IN ({', '.join(map(str, v.ints()))})",
        lambda v: f"SELECT id FROM items WHERE name NOT IN ({', '.join(v.sql_str() for _ in range(v.r.randint(1, 7)))})",
        lambda v: f"SELECT id FROM items WHERE id = ANY('{{{','.join(map(str, v.ints()))}}}'::bigint[])",
        lambda v: f"SELECT $${v.word().replace('$', '')}$$ AS d1, $tag${v.text().replace('$', '')}$tag$ AS d2",
        lambda v: f"SELECT {v.sql_str()}\n    {v.sql_str()} AS continued, 'a'\r\n'b'",
        lambda v: f"SELECT \"Mixed Case\", \"when\" FROM events WHERE \"Mixed Case\" = {v.sql_str()} AND \"when\" > '{v.dt(aware=False).isoformat(sep=' ')}'::timestamp",
        lambda v: f"SELECT {v.sql_str(str(uuid.UUID(int=v.r.getrandbits(128))))}::uuid, gen_random_uuid() IS NOT NULL",
        lambda v: f"SELECT '\\x{v.hexs() * 2}'::bytea, decode({v.sql_str('6869')}, 'hex'), E'\\\\x00ff'::bytea",
        lambda v: f"SELECT {v.r.choice(BOOLS)} AS b, {v.int()} IS NULL",
        lambda v: f"SELECT price::text::numeric(10,{v.r.randint(0, 4)}), qty::bigint, {v.number()}::int8, '{v.int(-32768, 32767)}'::smallint FROM items LIMIT {v.int(1, 10)} OFFSET {v.int(0, 10)}",
        lambda v: f"SELECT {v.int()} OPERATOR(pg_catalog.+) {v.int()}, {v.int(1, 99)} % {v.int(1, 9)}, 2 ^ {v.int(0, 10)}, |/ {v.int(0, 10000)}, @ -{v.int(0, 99)}, {v.int()} << {v.int(0, 8)}, ~ {v.int(0, 255)}",
        lambda v: f"SELECT id FROM items ORDER BY price DESC NULLS LAST, id LIMIT {v.int(1, 100)} OFFSET {v.int(0, 1000)}",
        lambda v: f"SELECT id FROM items ORDER BY id FETCH FIRST {v.int(1, 20)} ROWS ONLY",
        lambda v: f"SELECT qty, count(*) FROM items GROUP BY ROLLUP (qty) HAVING count(*) > {v.int(0, 3)}",
        lambda v: f"SELECT DISTINCT ON (qty) qty, id FROM items ORDER BY qty, price {v.r.choice(['ASC', 'DESC'])}",
        lambda v: f"SELECT id FROM items WHERE created > now() - make_interval(days => {v.int(1, 60)}) FOR UPDATE SKIP LOCKED",
        lambda v: f"SELECT format('%s-%I-%L', {v.sql_str()}, 'col name', {v.sql_str()}), to_char(now(), 'YYYY-MM-DD\"T\"HH24:MI')",
        lambda v: f"SELECT substring({v.sql_str()} FROM {v.int(1, 3)} FOR {v.int(1, 5)}), position('a' IN {v.sql_str()}), trim(BOTH 'x' FROM {v.sql_str()}), overlay('abcdef' PLACING 'zz' FROM {v.int(1, 4)})",
        lambda v: f"SELECT extract(epoch FROM TIMESTAMPTZ '{v.dt().isoformat()}'), date_trunc('{v.r.choice(['day', 'month', 'hour'])}', now()), EXTRACT(YEAR FROM DATE '{v.date()}')",
        lambda v: f"SELECT (DATE '{v.date()}', DATE '{v.date()}') OVERLAPS (DATE '{v.date()}', INTERVAL '{v.int(1, 99)} days')",
        lambda v: f"SELECT ROW({v.int()}, {v.sql_str()}) IS NOT NULL, (1, 2) < ({v.int(0, 3)}, {v.int(0, 3)})",
        lambda v: f"SELECT xmlelement(name item, xmlattributes({v.int()} AS id), {v.sql_str()})",
        lambda v: f"SELECT tsvector {v.sql_str('fat cat ' + v.word())} @@ to_tsquery('english', 'fat & cat')",
        lambda v: f"SELECT point({v.int()}, {v.int()}) <-> point '(0,0)', box '((0,0),(1,1))' && box '(({v.int(0, 2)},0),(2,2))', inet '10.0.0.{v.int(1, 254)}' << inet '10.0.0.0/24'",
        lambda v: f"SELECT int4range({v.int(0, 10)}, {v.int(10, 20)}) @> {v.int(0, 25)}, '[2024-01-01,2024-12-31)'::daterange -|- daterange('{v.date()}', NULL)",
        lambda v: f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT * FROM items WHERE price > {v.number()}",
        lambda v: f"EXPLAIN SELECT * FROM accounts WHERE owner_name = {v.sql_str()}",
        lambda v: f"SELECT nextval('ticket_seq'), setval('ticket_seq', {v.int(1000, 10**6)}, {v.r.choice(['true', 'false'])})",
        lambda v: f"SELECT add_item({v.sql_str(v.text())}{v.r.choice(['', ', ' + str(abs(v.dec())), ', p_price => ' + str(abs(v.dec()))])})",
        lambda v: f"SELECT price_band({v.number()}::numeric)",
        lambda v: f"SELECT pg_sleep({v.r.choice(['0', '0.001', '.0'])})",
        lambda v: f"TABLE accounts LIMIT {v.int(1, 5)}",
        lambda v: f"VALUES ({v.int()}, {v.sql_str()}), ({v.int()}, NULL)",
        lambda v: f"SELECT 1 WHERE EXISTS (SELECT 1 FROM items WHERE qty = {v.int(0, 9)}) UNION ALL SELECT 2 EXCEPT SELECT {v.int(0, 3)} INTERSECT SELECT 1",
        lambda v: f"SELECT {v.sql_str()} COLLATE \"C\" < 'b', upper({v.sql_str()}) LIKE 'A%', 'é' = U&'\\00E9'",
        lambda v: f"SELECT current_date, current_timestamp({v.int(0, 6)}), localtime, session_user, current_schema, CURRENT_ROLE",
    ]


# ------------------------------------------------------------------------------ drivers

def run_text(conn, sql, problems):
    """Run one hand-written statement with psycopg2 (no parameters: no % processing)."""
    cur = conn.cursor()
    try:
        cur.execute(sql)
        if cur.description:
            cur.fetchall()
    except Exception as e:  # keep going: the statement reached the server and is recorded
        problems.append((sql, str(e).splitlines()[0]))
        if not conn.autocommit:
            conn.rollback()
    finally:
        cur.close()


def psycopg2_part(params, v, rounds, problems):
    import psycopg2
    import psycopg2.extras
    psycopg2.extras.register_uuid()
    conn = psycopg2.connect(**params)
    conn.autocommit = True
    for sql in SETUP:
        run_text(conn, sql, problems)
    for sql in SESSION:
        run_text(conn, sql, problems)
    conn.autocommit = False   # psycopg2 now sends BEGIN itself before the first statement
    for script in TX_SCRIPTS:
        conn.autocommit = True
        for sql in script:
            run_text(conn, sql, problems)
    conn.autocommit = False

    # Client-side inlined parameters (psycopg2's own literal spelling).
    templates = [
        ("INSERT INTO items (name, price, qty, tags, scores, data, raw, created, due, at_time, span, ratio, ok, uid) "
         "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
         lambda: (v.text(), abs(v.dec()) % 10**7, v.int(0, 50), [v.word() for _ in range(v.r.randint(0, 4))],
                  v.ints(v.r.randint(0, 6)), psycopg2.extras.Json(v.json()), bytes(v.r.getrandbits(8) for _ in range(v.r.randint(0, 6))),
                  v.dt(), v.date(), dt.time(v.r.randint(0, 23), v.r.randint(0, 59), v.r.randint(0, 59)),
                  dt.timedelta(days=v.int(-30, 30), seconds=v.int(0, 86399)), v.float(), v.r.choice([True, False, None]),
                  v.r.choice([None, uuid.UUID(int=v.r.getrandbits(128))]))),
        ("SELECT id, name FROM items WHERE name = %s AND price > %s", lambda: (v.word(), v.dec())),
        ("SELECT * FROM items WHERE id IN %s", lambda: (tuple(v.ints()),)),
        ("SELECT * FROM items WHERE id = ANY(%s)", lambda: (v.ints(),)),
        ("SELECT %s::text, %s::int, %s::numeric, %s::float8, %s::bool, %s::date",
         lambda: (v.word(), v.int(), v.dec(), v.float(), v.r.choice([True, False]), v.date())),
        ("SELECT * FROM accounts WHERE balance BETWEEN %(lo)s AND %(hi)s AND owner_name LIKE %(pat)s",
         lambda: {"lo": v.dec(), "hi": v.dec(), "pat": v.word() + "%"}),
        ("UPDATE accounts SET balance = balance + %s WHERE id = %s", lambda: (v.dec(), v.int(1, 100))),
        ("SELECT %s AT TIME ZONE %s", lambda: (v.dt(), v.r.choice(ZONES))),
        ("SELECT %s + %s", lambda: (v.dt(aware=False), dt.timedelta(hours=v.int(-100, 100), microseconds=v.int(0, 999999)))),
        ("SELECT data FROM items WHERE data @> %s", lambda: (psycopg2.extras.Json({"k": v.word()}),)),
        ("SELECT %s, %s, %s", lambda: (None, v.r.choice([True, False]), v.float())),
        ("INSERT INTO events (kind, payload, \"when\", \"Mixed Case\") VALUES (%s, %s, %s, %s)",
         lambda: (v.word()[:32], psycopg2.extras.Json(v.json()), v.dt(aware=False), v.text())),
        ("SELECT name FROM items WHERE name ILIKE %s ESCAPE '\\' LIMIT %s OFFSET %s",
         lambda: ("%" + v.word().replace("%", "\\%") + "%", v.int(1, 100), v.int(0, 500))),
        ("SELECT %s::bytea", lambda: (psycopg2.Binary(bytes(v.r.getrandbits(8) for _ in range(v.r.randint(0, 10)))),)),
        ("SELECT ARRAY[%s, %s]::date[], %s::timestamptz[]", lambda: (v.date(), v.date(), [v.dt() for _ in range(v.r.randint(1, 3))])),
        ("DELETE FROM events WHERE kind = %s", lambda: (v.word()[:32],)),
        ("SELECT 'literal %% sign', %s", lambda: (v.int(),)),
    ]
    cur = conn.cursor()
    for _ in range(rounds):
        for sql, mk in templates:
            try:
                cur.execute(sql, mk())
                if cur.description:
                    cur.fetchall()
                conn.commit()
            except Exception as e:
                problems.append((sql, str(e).splitlines()[0]))
                conn.rollback()
    # Bulk inserts of varying size.
    for n in (1, 2, 3, 4, 5, 7, 10, 16, 25, 40, 64, 99):
        rows = [(v.text(), abs(v.dec()) % 10**7, v.int(0, 50)) for _ in range(n)]
        psycopg2.extras.execute_values(cur, "INSERT INTO items (name, price, qty) VALUES %s", rows)
        psycopg2.extras.execute_values(cur, "INSERT INTO order_items (order_id, item_id, amount) VALUES %s ON CONFLICT DO NOTHING",
                                       [(v.int(1, 10**6), v.int(0, 2), v.dec()) for _ in range(n)],
                                       template="(%s, (SELECT id FROM items ORDER BY id LIMIT 1 OFFSET %s), %s)")
        conn.commit()
    psycopg2.extras.execute_batch(cur, "UPDATE items SET qty = GREATEST(qty + %s, 0) WHERE id = %s",
                                  [(v.int(-3, 3), v.int(1, 200)) for _ in range(25)], page_size=5)
    cur.executemany("INSERT INTO accounts (id, owner_name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    [(v.int(200, 10**5), v.text()) for _ in range(20)])
    conn.commit()
    # COPY, psycopg2 style.
    import io
    buf = io.StringIO("".join(f"{v.int(10**6, 10**7)}\tcopied {i} {v.int()}\t{v.dec()}\n" for i in range(20)))
    cur.copy_from(buf, "accounts", columns=("id", "owner_name", "balance"))
    cur.copy_expert("COPY (SELECT id, name FROM items ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER true)", io.StringIO())
    cur.copy_to(io.StringIO(), "accounts", sep="|", null="")
    conn.commit()
    # Named (server-side) cursor: DECLARE / FETCH / CLOSE.
    with conn.cursor(name="big_scan") as ncur:
        ncur.itersize = 17
        ncur.execute("SELECT id, name FROM items WHERE price >= %s", (v.dec(),))
        for _ in ncur:
            pass
    conn.commit()
    # mogrify-only texts: not sent, but exactly what execute() would send.
    mogrified = [cur.mogrify(sql, mk()).decode("utf-8") for sql, mk in templates for _ in range(2)]
    conn.close()
    return mogrified


def psycopg3_part(params, v, rounds, problems):
    import psycopg
    from psycopg.types.json import Jsonb
    conninfo = " ".join(f"{k}={val}" for k, val in params.items())
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SET application_name = 'psycopg3 corpus'")
        server_side = [
            ("SELECT id, name, price FROM items WHERE id = %s", lambda: (v.int(1, 300),)),
            ("SELECT * FROM items WHERE name = %(name)s AND qty >= %(qty)s", lambda: {"name": v.word(), "qty": v.int(0, 9)}),
            ("SELECT * FROM items WHERE id = ANY(%s)", lambda: (v.ints(),)),
            ("SELECT %s::text, %s::int8, %s::numeric, %s::float8, %s::bool, %s::date, %s::timestamptz",
             lambda: (v.word(), v.int(), v.dec(), v.float(), v.r.choice([True, False]), v.date(), v.dt())),
            ("INSERT INTO items (name, price, qty, data, tags, created) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
             lambda: (v.text(), abs(v.dec()) % 10**7, v.int(0, 50), Jsonb(v.json()), [v.word()], v.dt())),
            ("UPDATE accounts SET balance = balance + %s WHERE id = %s RETURNING balance", lambda: (v.dec(), v.int(1, 100))),
            ("DELETE FROM order_items WHERE order_id = %s AND item_id = %s", lambda: (v.int(), v.int(1, 300))),
            ("SELECT count(*) FROM items WHERE created BETWEEN %s AND %s", lambda: (v.dt(), v.dt())),
            ("WITH x AS (SELECT %s::int AS a) SELECT a, a * %s FROM x", lambda: (v.int(), v.int(-9999, 9999))),
            ("SELECT data ->> %s FROM items WHERE data @> %s LIMIT %s", lambda: ("k", Jsonb({"n": v.int()}), v.int(1, 9))),
            ("SELECT 'it''s %% literal', %s, '$1 inside a string'", lambda: (v.word(),)),
            ("SELECT %b::bytea, %t::text", lambda: (bytes(v.r.getrandbits(8) for _ in range(4)), v.word())),
        ]
        for _ in range(3):
            for sql, mk in server_side:
                try:
                    conn.execute(sql, mk()).fetchall() if "RETURNING" in sql or sql.startswith(("SELECT", "WITH")) else conn.execute(sql, mk())
                except Exception as e:
                    problems.append((sql, str(e).splitlines()[0]))
        # Prepared statements (named Parse), executemany and pipeline mode.
        for _ in range(3):
            conn.execute("SELECT * FROM accounts WHERE id = %s", (v.int(1, 100),), prepare=True).fetchall()
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO accounts (id, owner_name, balance) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                            [(v.int(10**5, 10**6), v.text(), v.dec()) for _ in range(10)])
        with conn.pipeline():
            for _ in range(5):
                conn.execute("UPDATE items SET qty = GREATEST(qty + %s, 0) WHERE id = %s", (v.int(-2, 2), v.int(1, 300)))
        # Transactions: psycopg 3 sends BEGIN / COMMIT / SAVEPOINT "_pg3_1" ... itself.
        with conn.transaction():
            conn.execute("UPDATE accounts SET balance = balance - %s WHERE id = %s", (v.dec(), 1))
            with conn.transaction():
                conn.execute("UPDATE accounts SET balance = balance + %s WHERE id = %s", (v.dec(), 2))
            try:
                with conn.transaction():
                    conn.execute("SELECT 1 / 0")
            except psycopg.errors.DivisionByZero:
                pass
        # COPY, psycopg 3 style.
        with conn.cursor() as cur:
            with cur.copy("COPY accounts (id, owner_name, balance) FROM STDIN") as cp:
                for i in range(10):
                    cp.write_row((v.int(10**7, 10**8), f"copy {i} {v.word()}", v.dec()))
            with cur.copy("COPY (SELECT id, name, price FROM items WHERE price > 0) TO STDOUT (FORMAT BINARY)") as cp:
                for _ in cp:
                    pass
            with cur.copy("COPY items (name, price) FROM STDIN WITH (FORMAT csv, DELIMITER ';', QUOTE '\"', NULL 'NULL', FORCE_NOT_NULL (name))") as cp:
                cp.write("a;1.5\n\"b;c\";2\n")
            with cur.copy("COPY accounts TO STDOUT WITH (FORMAT text, DELIMITER E'\\t', ENCODING 'UTF8')") as cp:
                for _ in cp:
                    pass
        # Client-side binding: psycopg 3's own literal spelling.
        ccur = psycopg.ClientCursor(conn)
        client_side = [
            ("SELECT %s, %s, %s, %s, %s", lambda: (v.word(), v.int(), v.dec(), v.float(), None)),
            ("SELECT * FROM items WHERE name = %s AND created < %s AND due = %s", lambda: (v.text(), v.dt(), v.date())),
            ("SELECT * FROM items WHERE id = ANY(%s) AND tags && %s", lambda: (v.ints(), [v.word() for _ in range(v.r.randint(1, 3))])),
            ("UPDATE accounts SET balance = %s WHERE id = %s", lambda: (v.dec(), v.int(1, 100))),
            ("INSERT INTO events (kind, payload, \"when\") VALUES (%s, %s, %s)", lambda: (v.word()[:32], Jsonb(v.json()), v.dt(aware=False))),
            ("SELECT %s::bytea, %s::bool, %s::interval", lambda: (bytes(v.r.getrandbits(8) for _ in range(v.r.randint(0, 5))), v.r.choice([True, False]), dt.timedelta(seconds=v.int(-10**6, 10**6)))),
            ("SELECT %(a)s || %(b)s, %(a)s", lambda: {"a": v.word(), "b": v.text()}),
            ("SELECT %s::uuid, %s::time, %s::timestamp", lambda: (uuid.UUID(int=v.r.getrandbits(128)), dt.time(v.r.randint(0, 23), v.r.randint(0, 59)), v.dt(aware=False))),
        ]
        for _ in range(rounds):
            for sql, mk in client_side:
                try:
                    ccur.execute(sql, mk())
                    if ccur.description:
                        ccur.fetchall()
                except Exception as e:
                    problems.append((sql, str(e).splitlines()[0]))
        ccur.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(gen_common.HERE, "psycopg.jsonl"))
    ap.add_argument("--seed", type=int, default=1501)
    ap.add_argument("--rounds", type=int, default=12, help="random values per parametrized template")
    ap.add_argument("--hand", type=int, default=10, help="random values per hand-written shape")
    args = ap.parse_args()

    corpus = gen_common.Corpus()
    cluster = gen_common.Cluster()
    tap = None
    problems = []
    v = Rand(args.seed)
    try:
        cluster.recreate_db(DB_NAME)
        tap = gen_common.WireTap(cluster, corpus.add)
        params = {"host": "127.0.0.1", "port": tap.port, "user": cluster.user, "dbname": DB_NAME}
        if cluster.password:
            params["password"] = cluster.password
        mogrified = psycopg2_part(params, v, args.rounds, problems)
        gen_common.log(f"after psycopg2: {len(corpus)} statements")
        psycopg3_part(params, v, args.rounds, problems)
        gen_common.log(f"after psycopg 3: {len(corpus)} statements")

        import psycopg2
        conn = psycopg2.connect(**params)
        conn.autocommit = True
        for shape in hand_shapes():
            for _ in range(args.hand):
                run_text(conn, shape(v), problems)
        for sql in TEARDOWN:
            run_text(conn, sql, problems)
        conn.close()
        gen_common.log(f"after hand-written shapes: {len(corpus)} statements")
        tap.paused = True
        for sql in mogrified:
            corpus.add(sql)
    finally:
        if tap:
            tap.close()
        try:
            cluster.drop_db(DB_NAME)
        except Exception as e:
            gen_common.log(f"could not drop {DB_NAME}: {e}")
        cluster.close()
    for sql, err in problems:
        gen_common.log(f"server error (statement kept): {err}: {sql[:100]!r}")
    corpus.write(args.out)


if __name__ == "__main__":
    main()
