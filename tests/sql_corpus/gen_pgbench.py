#!/usr/bin/python3
"""Generate tests/sql_corpus/pgbench.jsonl: the statements pgbench itself sends.

    /usr/bin/python3 tests/sql_corpus/gen_pgbench.py [--out FILE] [--transactions N] [--seed S]

Uses PGHOST/PGPORT(/PGUSER/PGPASSWORD) when given, else starts a private cluster with
scripts/pgtmp.sh and stops it at the end. pgbench (PGBIN, default
/usr/lib/postgresql/15/bin) is pointed at gen_common.WireTap, which records every Query
and Parse message, and runs:
  - initialization in several variants (-i with client-side COPY, server-side generate
    with foreign keys, partitioned, unlogged, fillfactor): DROP/CREATE TABLE, TRUNCATE,
    COPY ... FROM STDIN, INSERT ... generate_series, VACUUM, ALTER TABLE ADD PRIMARY KEY;
  - the built-in scripts tpcb-like, simple-update and select-only with -M simple
    (values inlined by pgbench, e.g. `abalance + -1234`), -M extended and -M prepared
    ($1..$n in Parse), one client, a fixed --random-seed, so the output is reproducible.
Exact duplicates are dropped; every line is checked with libpg_query.
"""
import argparse
import os
import subprocess

import gen_common

DB_NAME = "pgmedic_corpus_pgbench"
PGBIN = os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(gen_common.HERE, "pgbench.jsonl"))
    ap.add_argument("--transactions", type=int, default=150, help="transactions per -M simple run")
    ap.add_argument("--seed", type=int, default=4242)
    args = ap.parse_args()

    corpus = gen_common.Corpus()
    cluster = gen_common.Cluster()
    tap = None
    try:
        cluster.recreate_db(DB_NAME)
        tap = gen_common.WireTap(cluster, corpus.add)
        env = dict(os.environ, PGHOST="127.0.0.1", PGPORT=str(tap.port), PGUSER=cluster.user,
                   PGDATABASE=DB_NAME, PGSSLMODE="disable", PGGSSENCMODE="disable")
        if cluster.password:
            env["PGPASSWORD"] = cluster.password

        def pgbench(*argv):
            cmd = [os.path.join(PGBIN, "pgbench"), *argv]
            res = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            if res.returncode != 0:
                raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stderr}")

        # Initialization variants (the last one leaves scale 3 for the runs below).
        pgbench("-i", "-q", "-s", "1", "--partitions=3", "--partition-method=hash")
        pgbench("-i", "-q", "-s", "1", "-I", "dtGvpf", "--unlogged-tables", "--fillfactor=90")
        pgbench("-i", "-q", "-s", "1", "--partitions=2", "--partition-method=range", "-I", "dtgvp")
        pgbench("-i", "-q", "-s", "3", "-I", "dtgvp", "--index-tablespace=pg_default", "--tablespace=pg_default")
        gen_common.log(f"after init: {len(corpus)} statements")

        seed = args.seed
        for script in ("tpcb-like", "simple-update", "select-only"):
            for mode in ("simple", "extended", "prepared"):
                n = args.transactions if mode == "simple" else 3
                if script == "select-only" and mode == "simple":
                    n *= 2
                seed += 1
                # First run of each script without -n: pgbench then vacuums and truncates itself.
                vacuum = [] if (script == "tpcb-like" and mode == "simple") else ["-n"]
                pgbench(*vacuum, "-b", script, "-M", mode, "-c", "1", "-t", str(n), f"--random-seed={seed}")
        gen_common.log(f"after runs: {len(corpus)} statements")
    finally:
        if tap:
            tap.close()
        try:
            cluster.drop_db(DB_NAME)
        except Exception as e:
            gen_common.log(f"could not drop {DB_NAME}: {e}")
        cluster.close()
    corpus.write(args.out)


if __name__ == "__main__":
    main()
