"""`pgmedic doctor`: the catalog checks (advise_catalog) against the real PostgreSQL.

A database of its own (pgmedic_doctor, recreated per module) holds a small schema
with one example of each problem and, next to each, the look-alike that must not
be reported:

- unindexed foreign keys: doc_review.book_id (12 000 rows: medium), doc_loan.book_id
  (only a partial index), audit.doc_event.book_id (another schema: qualified
  names), "DocNote"."bookId" (names that need quoting);
  not reported: doc_book.author_id (indexed), doc_translation (lang, book_id)
  covered by an index on (lang, book_id) whose columns are in another order;
- redundant indexes: doc_book_title_idx (title) covered by (title, published);
  doc_author_name_idx2, an exact duplicate of doc_author_name_idx;
  not reported: the unique doc_book_isbn_key (isbn) next to (isbn, title);
- unused indexes: doc_book_published_idx and doc_author_name_idx (their tables
  are read, the indexes never); not reported: indexes that were scanned, unique
  and primary-key indexes, the index covering doc_book.author_id (a foreign key),
  the redundant index (reported once, as redundant), and the indexes of doc_log,
  a table nobody reads.

Every finding is asserted exactly (kind, table, columns, SQL, Django change), the
suggested SQL is run and a second doctor run must then find nothing.  Errors: a
bad or unreachable URL exits 1 with libpq's reason, usage mistakes exit 2.
"""
import json
import re
import time

import pytest

from clitool import run_cli
from conftest import free_port, pg_url

DBNAME = "pgmedic_doctor"

SCHEMA = """
CREATE TABLE doc_author (id bigserial PRIMARY KEY, name text NOT NULL);
CREATE INDEX doc_author_name_idx ON doc_author (name);
CREATE INDEX doc_author_name_idx2 ON doc_author (name);

CREATE TABLE doc_book (
    id bigserial PRIMARY KEY,
    title text NOT NULL,
    isbn text,
    published date,
    author_id bigint NOT NULL REFERENCES doc_author (id)
);
CREATE INDEX doc_book_author_id_idx ON doc_book (author_id);
CREATE INDEX doc_book_title_idx ON doc_book (title);
CREATE INDEX doc_book_title_published_idx ON doc_book (title, published);
CREATE UNIQUE INDEX doc_book_isbn_key ON doc_book (isbn);
CREATE INDEX doc_book_isbn_title_idx ON doc_book (isbn, title);
CREATE INDEX doc_book_published_idx ON doc_book (published);

CREATE TABLE doc_review (
    id bigserial PRIMARY KEY,
    book_id bigint NOT NULL REFERENCES doc_book (id),
    stars int NOT NULL,
    body text
);
-- book_id is the second column: no help for the foreign key
CREATE INDEX doc_review_stars_book_idx ON doc_review (stars, book_id);

CREATE TABLE doc_loan (
    id serial PRIMARY KEY,
    book_id bigint NOT NULL REFERENCES doc_book (id),
    returned boolean NOT NULL DEFAULT false
);
CREATE INDEX doc_loan_open_idx ON doc_loan (book_id) WHERE NOT returned;

CREATE TABLE doc_edition (book_id bigint REFERENCES doc_book (id), lang text, PRIMARY KEY (book_id, lang));
CREATE TABLE doc_translation (
    id serial PRIMARY KEY,
    book_id bigint NOT NULL,
    lang text NOT NULL,
    FOREIGN KEY (book_id, lang) REFERENCES doc_edition (book_id, lang)
);
CREATE INDEX doc_translation_lang_book_idx ON doc_translation (lang, book_id);

CREATE TABLE doc_log (id serial PRIMARY KEY, created timestamptz NOT NULL DEFAULT now(), line text);
CREATE INDEX doc_log_created_idx ON doc_log (created);

CREATE TABLE "DocNote" (id serial PRIMARY KEY, "bookId" bigint REFERENCES doc_book (id));

CREATE SCHEMA audit;
CREATE TABLE audit.doc_event (id serial PRIMARY KEY, book_id bigint REFERENCES doc_book (id));

INSERT INTO doc_author (name) SELECT 'author ' || i FROM generate_series(1, 50) i;
INSERT INTO doc_book (title, isbn, published, author_id)
    SELECT 'book ' || i, 'isbn-' || i, date '2000-01-01' + i, 1 + i % 50 FROM generate_series(1, 200) i;
INSERT INTO doc_review (book_id, stars, body)
    SELECT 1 + i % 200, 1 + i % 5, 'review ' || i FROM generate_series(1, 12000) i;
INSERT INTO doc_loan (book_id) VALUES (1), (2);
INSERT INTO doc_edition VALUES (1, 'en'), (1, 'fr');
INSERT INTO doc_translation (book_id, lang) VALUES (1, 'fr');
INSERT INTO doc_log (line) VALUES ('started');
INSERT INTO "DocNote" ("bookId") VALUES (1);
INSERT INTO audit.doc_event (book_id) VALUES (1);
ANALYZE;
"""

# Reads that make the statistics say what the test needs: doc_author and doc_book
# are read through an index (their primary keys, two doc_book indexes), doc_log
# and doc_loan never are.
READS = [
    "SET enable_seqscan = off",
    "SELECT * FROM doc_author WHERE id = 1",
    "SELECT * FROM doc_book WHERE id = 1",
    "SET enable_bitmapscan = off",
    "SET enable_sort = off",
    "SELECT title, published FROM doc_book ORDER BY title, published",
    "SELECT isbn, title FROM doc_book ORDER BY isbn, title",
    "RESET ALL",
    "SELECT count(*) FROM doc_author",
    "SELECT count(*) FROM doc_book",
]

EXPECTED = {
    "unindexed_foreign_key:public.doc_review(book_id)": {
        "kind": "unindexed_foreign_key", "severity": "medium", "table": "doc_review", "columns": ["book_id"],
        "sql": "CREATE INDEX CONCURRENTLY doc_review_book_id_idx ON public.doc_review (book_id);",
        "ref_table": "doc_book", "ref_columns": ["id"], "constraint": "doc_review_book_id_fkey", "rows": 12000,
    },
    "unindexed_foreign_key:public.doc_loan(book_id)": {
        "kind": "unindexed_foreign_key", "severity": "low", "table": "doc_loan", "columns": ["book_id"],
        "sql": "CREATE INDEX CONCURRENTLY doc_loan_book_id_idx ON public.doc_loan (book_id);",
        "ref_table": "doc_book", "ref_columns": ["id"],
    },
    "unindexed_foreign_key:audit.doc_event(book_id)": {
        "kind": "unindexed_foreign_key", "severity": "low", "table": "audit.doc_event", "columns": ["book_id"],
        "sql": "CREATE INDEX CONCURRENTLY doc_event_book_id_idx ON audit.doc_event (book_id);",
        "ref_table": "doc_book",
    },
    "unindexed_foreign_key:public.DocNote(bookId)": {
        "kind": "unindexed_foreign_key", "severity": "low", "table": "DocNote", "columns": ["bookId"],
        "sql": 'CREATE INDEX CONCURRENTLY "DocNote_bookId_idx" ON public."DocNote" ("bookId");',
    },
    "redundant_index:public.doc_book_title_idx": {
        "kind": "redundant_index", "severity": "low", "table": "doc_book", "columns": ["title"],
        "sql": "DROP INDEX CONCURRENTLY public.doc_book_title_idx;",
        "index": "doc_book_title_idx", "redundant_to": "doc_book_title_published_idx",
        "redundant_to_columns": ["title", "published"],
    },
    "redundant_index:public.doc_author_name_idx2": {
        "kind": "redundant_index", "severity": "low", "table": "doc_author", "columns": ["name"],
        "sql": "DROP INDEX CONCURRENTLY public.doc_author_name_idx2;",
        "index": "doc_author_name_idx2", "redundant_to": "doc_author_name_idx",
    },
    "unused_index:public.doc_book_published_idx": {
        "kind": "unused_index", "severity": "low", "table": "doc_book", "columns": ["published"],
        "sql": "DROP INDEX CONCURRENTLY public.doc_book_published_idx;",
        "index": "doc_book_published_idx", "idx_scan": 0,
    },
    "unused_index:public.doc_author_name_idx": {
        "kind": "unused_index", "severity": "low", "table": "doc_author", "columns": ["name"],
        "sql": "DROP INDEX CONCURRENTLY public.doc_author_name_idx;",
        "index": "doc_author_name_idx", "idx_scan": 0,
    },
}

MODELS = {
    "version": 1,
    "framework": "django:4.2.21",
    "models": [
        {"app_label": "shop", "model": "Author", "label": "shop.Author", "table": "doc_author", "pk": "id",
         "managed": True, "auto_created": False,
         "fields": [{"name": "id", "column": "id", "type": "BigAutoField", "null": False, "unique": True,
                     "db_index": False, "primary_key": True},
                    {"name": "name", "column": "name", "type": "CharField", "null": False, "unique": False,
                     "db_index": True, "primary_key": False}],
         "relations": []},
        {"app_label": "shop", "model": "Book", "label": "shop.Book", "table": "doc_book", "pk": "id",
         "managed": True, "auto_created": False,
         "fields": [{"name": "title", "column": "title", "type": "CharField", "null": False, "unique": False,
                     "db_index": True, "primary_key": False},
                    {"name": "published", "column": "published", "type": "DateField", "null": True,
                     "unique": False, "db_index": False, "primary_key": False},
                    {"name": "author", "column": "author_id", "type": "ForeignKey", "null": False,
                     "unique": False, "db_index": True, "primary_key": False}],
         "relations": [{"kind": "forward_fk", "name": "author", "column": "author_id", "to_model": "shop.Author",
                        "to_table": "doc_author", "to_column": "id", "null": False}]},
        {"app_label": "shop", "model": "Review", "label": "shop.Review", "table": "doc_review", "pk": "id",
         "managed": True, "auto_created": False,
         "fields": [{"name": "book", "column": "book_id", "type": "ForeignKey", "null": False, "unique": False,
                     "db_index": False, "primary_key": False},
                    {"name": "stars", "column": "stars", "type": "IntegerField", "null": False, "unique": False,
                     "db_index": False, "primary_key": False}],
         "relations": [{"kind": "forward_fk", "name": "book", "column": "book_id", "to_model": "shop.Book",
                        "to_table": "doc_book", "to_column": "id", "null": False}]},
    ],
}


def recreate_db(pg, name):
    pg.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', dbname="postgres")
    pg.sql(f'CREATE DATABASE "{name}"', dbname="postgres")
    return name


def stat(pg, dbname, query):
    return pg.sql(query, dbname=dbname)[0][0]


def build_schema(pg, dbname):
    recreate_db(pg, dbname)
    pg.sql(SCHEMA, dbname=dbname)
    conn = pg.connect(dbname=dbname)
    conn.autocommit = True
    with conn.cursor() as cur:
        for q in READS:
            cur.execute(q)
        # the plans the statistics depend on (EXPLAIN itself scans nothing)
        cur.execute("SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off")
        cur.execute("EXPLAIN SELECT title, published FROM doc_book ORDER BY title, published")
        plan = "\n".join(r[0] for r in cur.fetchall())
        assert "doc_book_title_published_idx" in plan, plan
        cur.execute("EXPLAIN SELECT isbn, title FROM doc_book ORDER BY isbn, title")
        plan = "\n".join(r[0] for r in cur.fetchall())
        assert "doc_book_isbn_title_idx" in plan, plan
    conn.close()  # a backend flushes its statistics when it exits

    def flushed():
        scans = dict(pg.sql("SELECT indexrelname, idx_scan FROM pg_stat_user_indexes", dbname=dbname))
        return all(scans.get(i, 0) > 0 for i in ("doc_book_title_published_idx", "doc_book_isbn_title_idx",
                                                 "doc_author_pkey", "doc_book_pkey"))
    deadline = time.monotonic() + 20
    while not flushed():
        assert time.monotonic() < deadline, "statistics were not flushed"
        time.sleep(0.1)
    # the premises of the "not reported" cases
    for table in ("doc_log", "doc_loan"):
        assert stat(pg, dbname, f"SELECT idx_scan FROM pg_stat_user_tables WHERE relname = '{table}'") == 0
    assert stat(pg, dbname, "SELECT idx_scan FROM pg_stat_user_indexes "
                            "WHERE indexrelname = 'doc_book_author_id_idx'") == 0
    return dbname


@pytest.fixture(scope="module")
def doctor_db(pg):
    return build_schema(pg, DBNAME)


def doctor_json(pg, dbname, *extra):
    rc, out, err = run_cli("doctor", "--upstream", pg.url(dbname=dbname), "--json", *extra)
    assert rc == 0, err
    assert err == ""
    return json.loads(out)


# ------------------------------------------------------------------ findings

def test_exact_findings(pg, doctor_db):
    doc = doctor_json(pg, doctor_db)
    assert list(doc) == ["findings"]
    got = {f["id"]: f for f in doc["findings"]}
    assert sorted(got) == sorted(EXPECTED), json.dumps(doc, indent=1)
    for fid, want in EXPECTED.items():
        f = got[fid]
        for key, value in want.items():
            assert f[key] == value, (fid, key, f[key], value)


def test_json_shape(pg, doctor_db):
    doc = doctor_json(pg, doctor_db)
    common = {"id", "kind", "severity", "route", "table", "columns", "fingerprint", "query", "occurrences",
              "time_wasted_ms", "fix", "sql", "django"}
    for f in doc["findings"]:
        assert common <= set(f), f
        assert f["route"] is None and f["fingerprint"] is None and f["query"] is None
        assert f["occurrences"] == 1 and f["time_wasted_ms"] == 0
        assert f["django"] is None  # no --models
        assert isinstance(f["fix"], str) and f["fix"].endswith(".") and "\n" not in f["fix"]
        assert isinstance(f["size_bytes"], int) and f["size_bytes"] > 0
        if f["kind"] in ("unused_index", "redundant_index"):
            assert f["size_bytes"] == stat(pg, doctor_db, f"SELECT pg_relation_size('{f['index']}'::regclass)")
            assert f["sql"].startswith("DROP INDEX CONCURRENTLY ")
        else:
            assert f["sql"].startswith("CREATE INDEX CONCURRENTLY ")
        if f["kind"] == "unused_index":
            assert "stats_reset" in f and f["table_idx_scans"] > 0
            assert "has not been scanned once since the statistics" in f["fix"]
    # ordered by severity, then size
    sev = [f["severity"] for f in doc["findings"]]
    assert sev == sorted(sev, key=["high", "medium", "low"].index)
    assert doc["findings"][0]["id"] == "unindexed_foreign_key:public.doc_review(book_id)"
    lows = [f["size_bytes"] for f in doc["findings"] if f["severity"] == "low"]
    assert lows == sorted(lows, reverse=True)


def test_models_name_the_django_fields(pg, doctor_db, tmp_path):
    models = tmp_path / "models.json"
    models.write_text(json.dumps(MODELS))
    got = {f["id"]: f for f in doctor_json(pg, doctor_db, "--models", models)["findings"]}
    review = got["unindexed_foreign_key:public.doc_review(book_id)"]
    assert review["django"] == {"model": "Review", "app_label": "shop", "field": "book", "change": "db_index=True"}
    assert review["fix"].startswith("Index the foreign key doc_review.book_id (Review.book, app shop): ")
    assert "db_index=True" in review["fix"]
    assert got["redundant_index:public.doc_book_title_idx"]["django"] == {
        "model": "Book", "app_label": "shop", "field": "title", "change": "remove db_index=True"}
    assert got["unused_index:public.doc_book_published_idx"]["django"] == {
        "model": "Book", "app_label": "shop", "field": "published",
        "change": 'remove the Meta.indexes entry models.Index(fields=["published"])'}
    assert got["unused_index:public.doc_author_name_idx"]["django"]["model"] == "Author"
    assert got["unused_index:public.doc_author_name_idx"]["fix"].startswith(
        "Index doc_author_name_idx on doc_author.name (Author.name, app shop) has not been scanned once since ")
    # tables the map does not know keep django null
    assert got["unindexed_foreign_key:public.doc_loan(book_id)"]["django"] is None

    # the text output shows the model change
    rc, out, err = run_cli("doctor", "--upstream", pg.url(dbname=doctor_db), "--models", models,
                           env={"COLUMNS": "200"})
    assert rc == 0, err
    assert "  django  Review.book (app shop): db_index=True" in out.splitlines()


def test_text_output(pg, doctor_db):
    rc, out, err = run_cli("doctor", "--upstream", pg.url(dbname=doctor_db), env={"COLUMNS": "100"})
    assert rc == 0, err
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == f"8 catalog findings in {doctor_db} (0 high, 1 medium, 7 low)"
    headers = [line for line in lines if line.startswith("[")]
    assert len(headers) == 8
    assert headers[0] == "[medium] unindexed foreign key doc_review (book_id) \u2192 doc_book (id)"
    assert "[low] redundant index doc_book_title_idx on doc_book (title), covered by " \
           "doc_book_title_published_idx (title, published)" in headers
    assert "[low] unused index doc_book_published_idx on doc_book (published)" in headers
    assert "  sql     CREATE INDEX CONCURRENTLY doc_review_book_id_idx ON public.doc_review (book_id);" in lines
    assert "  sql     DROP INDEX CONCURRENTLY public.doc_book_published_idx;" in lines
    i = lines.index(headers[0])
    assert lines[i + 1].startswith("  size    table ") and "about 12000 rows" in lines[i + 1]
    assert lines[i + 2].startswith("  fix     Index the foreign key doc_review.book_id: PostgreSQL does not")
    assert "[low] redundant index doc_author_name_idx2 on doc_author (name), a duplicate of " \
           "doc_author_name_idx (name)" in headers
    for line in lines:
        if not line.startswith("["):  # headers are not wrapped, the rest is
            assert len(line) <= 100 or " " not in line[10:], line
    assert "  django  " not in out  # no --models
    assert "cannot run inside a transaction block" in out


def test_suggested_sql_fixes_everything(pg):
    """Running every suggested statement (as they are, outside a transaction) leaves
    nothing to report, and the indexes created have the suggested names."""
    db = build_schema(pg, "pgmedic_doctor_fix")
    doc = doctor_json(pg, db)
    assert len(doc["findings"]) == len(EXPECTED)
    conn = pg.connect(dbname=db)
    conn.autocommit = True
    with conn.cursor() as cur:
        for f in doc["findings"]:
            cur.execute(f["sql"])
    conn.close()
    names = {r[0] for r in pg.sql("SELECT indexname FROM pg_indexes WHERE schemaname IN ('public', 'audit')",
                                  dbname=db)}
    assert {"doc_review_book_id_idx", "doc_loan_book_id_idx", "doc_event_book_id_idx", "DocNote_bookId_idx"} <= names
    assert not names & {"doc_book_title_idx", "doc_author_name_idx2", "doc_book_published_idx", "doc_author_name_idx"}
    assert doctor_json(pg, db) == {"findings": []}
    rc, out, err = run_cli("doctor", "--upstream", pg.url(dbname=db))
    assert rc == 0, err
    assert out == f"no catalog problems found in {db}\n"


def test_empty_database(pg):
    db = recreate_db(pg, "pgmedic_doctor_empty")
    rc, out, err = run_cli("doctor", "--upstream", pg.url(dbname=db))
    assert (rc, out, err) == (0, f"no catalog problems found in {db}\n", "")
    assert doctor_json(pg, db) == {"findings": []}


def test_unread_table_indexes_become_unused_once_read(pg):
    """The decision documented in advise_catalog.c: a table the workload never
    reads through an index says nothing about its indexes (sequential scans do
    not count: index builds are counted as such); once another index of it is
    used, its unscanned index is reported."""
    db = recreate_db(pg, "pgmedic_doctor_reads")
    pg.sql("CREATE TABLE t (id serial PRIMARY KEY, v int); CREATE INDEX t_v_idx ON t (v); "
           "INSERT INTO t (v) SELECT generate_series(1, 10)", dbname=db)
    pg.sql("CREATE INDEX CONCURRENTLY t_v_idx2 ON t (v, id)", dbname=db)
    pg.sql("SELECT count(*) FROM t", dbname=db)
    deadline = time.monotonic() + 20
    while stat(pg, db, "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 't'") < 5:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    # t_v_idx is a prefix of t_v_idx2: redundant whatever the statistics say
    assert [f["id"] for f in doctor_json(pg, db)["findings"]] == ["redundant_index:public.t_v_idx"]
    pg.sql("SET enable_seqscan = off; SELECT * FROM t WHERE id = 3", dbname=db)
    while stat(pg, db, "SELECT idx_scan FROM pg_stat_user_tables WHERE relname = 't'") == 0:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    got = doctor_json(pg, db)["findings"]
    ids = [f["id"] for f in got]
    # now t_v_idx2 is unused too; t_v_idx stays reported once, as redundant
    assert ids == ["redundant_index:public.t_v_idx", "unused_index:public.t_v_idx2"], ids
    unused = next(f for f in got if f["kind"] == "unused_index")
    assert unused["table_idx_scans"] == 1 and unused["idx_scan"] == 0
    assert "has not been scanned once since the statistics began (never reset), against 1 index scan of " \
           "its table: " in unused["fix"]


def test_unique_expression_include_and_ordering_rules(pg):
    """Look-alikes: of two identical unique indexes the one backing the constraint
    stays; a plain index equal to a unique one goes (to the constraint's); an
    expression index is never redundant; an index with INCLUDE columns is not
    covered by one without them; a different ordering (DESC) does not cover."""
    db = recreate_db(pg, "pgmedic_doctor_rules")
    pg.sql("""
        CREATE TABLE r (id int PRIMARY KEY, a int, b int, c text);
        ALTER TABLE r ADD CONSTRAINT r_a_key UNIQUE (a);
        CREATE UNIQUE INDEX r_a_extra ON r (a);
        CREATE INDEX r_a_plain ON r (a);
        CREATE INDEX r_lower_c ON r (lower(c));
        CREATE INDEX r_lower_c_b ON r (lower(c), b);
        CREATE INDEX r_b_incl ON r (b) INCLUDE (c);
        CREATE INDEX r_b_a ON r (b, a);
        CREATE INDEX r_a_desc ON r (a DESC, b);
    """, dbname=db)
    got = {f["id"]: f for f in doctor_json(pg, db)["findings"]}
    assert set(got) == {"redundant_index:public.r_a_extra", "redundant_index:public.r_a_plain"}, list(got)
    assert got["redundant_index:public.r_a_extra"]["redundant_to"] == "r_a_key"
    assert got["redundant_index:public.r_a_plain"]["redundant_to"] == "r_a_key"


def test_schema_facts(pg, doctor_db):
    """advise_schema, through `doctor --schema`: what the N+1 relator gets."""
    rc, out, err = run_cli("doctor", "--upstream", pg.url(dbname=doctor_db), "--schema")
    assert rc == 0, err
    s = json.loads(out)
    assert set(s) == {"foreign_keys", "primary_keys", "tables"}
    fks = {(f["table"], tuple(f["columns"])): f for f in s["foreign_keys"]}
    assert fks[("doc_review", ("book_id",))] == {"table": "doc_review", "columns": ["book_id"],
                                                 "ref_table": "doc_book", "ref_columns": ["id"]}
    assert fks[("doc_translation", ("book_id", "lang"))]["ref_columns"] == ["book_id", "lang"]
    assert ("audit.doc_event", ("book_id",)) in fks and ("DocNote", ("bookId",)) in fks
    assert len(s["foreign_keys"]) == 7
    assert s["primary_keys"]["doc_book"] == ["id"]
    assert s["primary_keys"]["doc_edition"] == ["book_id", "lang"]
    assert s["primary_keys"]["audit.doc_event"] == ["id"]
    assert s["tables"]["doc_review"]["rows"] == 12000
    assert s["tables"]["doc_review"]["bytes"] == stat(pg, doctor_db, "SELECT pg_total_relation_size('doc_review')")
    assert set(s["tables"]) == {"doc_author", "doc_book", "doc_review", "doc_loan", "doc_edition",
                                "doc_translation", "doc_log", "DocNote", "audit.doc_event"}


# ------------------------------------------------------------------ errors

def test_unreachable_server_exits_1():
    port = free_port()
    rc, out, err = run_cli("doctor", "--upstream", pg_url("postgres", port, "x"))
    assert rc == 1 and out == ""
    assert err.startswith("pgmedic doctor: cannot connect to PostgreSQL: "), err
    assert "Connection refused" in err and err.count("\n") == 1


def test_unknown_database_exits_1(pg):
    rc, out, err = run_cli("doctor", "--upstream", pg.url(dbname="no_such_db_here"))
    assert rc == 1 and out == ""
    assert err.startswith("pgmedic doctor: cannot connect to PostgreSQL: ")
    assert 'database "no_such_db_here" does not exist' in err


@pytest.mark.parametrize("url,message", [
    ("not a url", 'invalid --upstream: missing "=" after "not" in connection info string'),
    ("postgresql://postgres@127.0.0.1:notaport/x", "notaport"),
    ("postgresql://postgres@127.0.0.1:5432/x?bogus_option=1", 'invalid URI query parameter: "bogus_option"'),
])
def test_bad_url_exits_1(url, message):
    rc, out, err = run_cli("doctor", "--upstream", url)
    assert rc == 1, (out, err)
    assert out == ""
    assert err.startswith("pgmedic doctor: ") and message in err, err


def test_password_is_not_printed():
    port = free_port()
    rc, out, err = run_cli("doctor", "--upstream", pg_url("postgres", port, "x", password="s3cret-Pw"))
    assert rc == 1
    assert "s3cret-Pw" not in err + out


@pytest.mark.parametrize("content,message", [
    (None, "cannot read {path}: No such file or directory"),
    ("{not json", "{path} is not valid JSON: line 1"),
    ('{"version": 1}', "{path} is not an ORM model map"),
])
def test_bad_models_file_exits_1(pg, tmp_path, content, message):
    path = tmp_path / "models.json"
    if content is not None:
        path.write_text(content)
    rc, out, err = run_cli("doctor", "--upstream", pg.url(), "--models", path)
    assert rc == 1 and out == ""
    assert err.startswith("pgmedic doctor: ") and message.format(path=path) in err, err


@pytest.mark.parametrize("args,message", [
    ([], "pgmedic doctor: --upstream URL is required"),
    (["--upstream"], "pgmedic doctor: option '--upstream' needs a value"),
    (["--upstream", ""], "pgmedic doctor: --upstream URL is required"),
    (["--upstream", "postgresql://x/y", "--models"], "pgmedic doctor: option '--models' needs a value"),
    (["--upstream", "postgresql://x/y", "--bogus"], "pgmedic doctor: unknown option '--bogus'"),
    (["--upstream", "postgresql://x/y", "stray"], "pgmedic doctor: unexpected argument 'stray'"),
])
def test_usage_errors_exit_2(args, message):
    rc, out, err = run_cli("doctor", *args)
    assert rc == 2, (rc, out, err)
    assert out == ""
    assert message in err
    assert "Try 'pgmedic doctor --help' for more information." in err


@pytest.mark.parametrize("args", [["help", "doctor"], ["doctor", "--help"], ["doctor", "-h"]])
def test_help(args):
    rc, out, err = run_cli(*args)
    assert rc == 0, err
    assert out.startswith("Usage: pgmedic doctor --upstream URL [--models FILE] [--json]")
    rc, out, _ = run_cli("help")
    assert re.search(r"^  doctor\s+\S", out, re.M)
