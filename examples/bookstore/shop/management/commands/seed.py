"""manage.py seed — fill the bookstore with a realistic amount of data, fast.

Everything is generated inside PostgreSQL with INSERT ... SELECT ... FROM
generate_series (no rows travel through Python), deterministically (the same numbers
give the same data), then VACUUM ANALYZE so that plans are the ones a real database
would get.  The default sizes take a few seconds:

    authors 500, publishers 20, tags 30, books 5,000 (3 tags each), reviews 400,000,
    orders 20,000 (3 lines each), wishlists 50,000

Reviews are spread over the last two years; about 60 % are "published".  With the
data already there the command does nothing unless --reset is given (which truncates
every shop table first).
"""
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

TABLES = ["shop_orderline", "shop_order", "shop_wishlist", "shop_review", "shop_book_tags", "shop_book",
          "shop_tag", "shop_publisher", "shop_author"]

# Each statement takes its sizes from %(name)s parameters.  Ids come from the tables'
# own sequences, restarted by TRUNCATE ... RESTART IDENTITY, so they run 1..n.
STEPS = [
    ("authors", """
        INSERT INTO shop_author (name, email, bio, born)
        SELECT 'Author ' || i, 'author' || i || '@example.com', '',
               DATE '1940-01-01' + (i * 37) %% 20000
        FROM generate_series(1, %(authors)s) AS i"""),
    ("publishers", """
        INSERT INTO shop_publisher (name, country)
        SELECT 'Publisher ' || i, (ARRAY['FR', 'DE', 'US', 'GB', 'IT', 'ES'])[1 + i %% 6]
        FROM generate_series(1, %(publishers)s) AS i"""),
    ("tags", """
        INSERT INTO shop_tag (name)
        SELECT 'tag-' || lpad(i::text, 3, '0') FROM generate_series(1, %(tags)s) AS i"""),
    ("books", """
        INSERT INTO shop_book (title, isbn, price, published, author_id, publisher_id)
        SELECT 'Book ' || i, '978-' || lpad(i::text, 10, '0'), 5 + (i * 13) %% 4500 / 100.0,
               DATE '1990-01-01' + (i * 11) %% 12000,
               1 + (i * 7) %% %(authors)s, 1 + i %% %(publishers)s
        FROM generate_series(1, %(books)s) AS i"""),
    ("book tags", """
        INSERT INTO shop_book_tags (book_id, tag_id)
        SELECT b, 1 + (b + k * (%(tags)s / 3)) %% %(tags)s
        FROM generate_series(1, %(books)s) AS b, generate_series(0, 2) AS k"""),
    ("reviews", """
        INSERT INTO shop_review (book_id, rating, status, body, created_at)
        SELECT 1 + i %% %(books)s, 1 + (i * 7) %% 5,
               CASE WHEN i %% 10 < 6 THEN 'published' WHEN i %% 10 < 9 THEN 'pending' ELSE 'hidden' END,
               'Review ' || i || ' of book ' || (1 + i %% %(books)s) || '. '
                 || repeat('A fine read, would recommend. ', 1 + i %% 5),
               now() - ((i::bigint * 7919) %% (730 * 1440)) * interval '1 minute'
        FROM generate_series(1, %(reviews)s) AS i"""),
    ("orders", """
        INSERT INTO shop_order (customer_email, created_at, status)
        SELECT 'customer' || (i %% 5000) || '@example.com',
               now() - ((i::bigint * 104729) %% (365 * 1440)) * interval '1 minute',
               (ARRAY['new', 'paid', 'shipped', 'cancelled'])[1 + i %% 4]
        FROM generate_series(1, %(orders)s) AS i"""),
    ("order lines", """
        INSERT INTO shop_orderline (order_id, book_id, quantity, unit_price)
        SELECT o, 1 + (o * 3 + k * 977) %% %(books)s, 1 + k, 9.99 + k
        FROM generate_series(1, %(orders)s) AS o, generate_series(0, 2) AS k"""),
    ("wishlists", """
        INSERT INTO shop_wishlist (book_id, customer_email)
        SELECT 1 + (i * 31) %% %(books)s, 'customer' || (i %% 7000) || '@example.com'
        FROM generate_series(1, %(wishlists)s) AS i"""),
]

DEFAULTS = {"authors": 500, "publishers": 20, "tags": 30, "books": 5000, "reviews": 400000,
            "orders": 20000, "wishlists": 50000}


class Command(BaseCommand):
    help = "Fill the bookstore tables with generated data (INSERT ... SELECT generate_series), then VACUUM ANALYZE."

    def add_arguments(self, parser):
        for name, default in DEFAULTS.items():
            parser.add_argument("--" + name, type=int, default=default, help=f"how many (default {default})")
        parser.add_argument("--reset", action="store_true", help="truncate the shop tables first")

    def handle(self, *args, **opts):
        sizes = {k: opts[k] for k in DEFAULTS}
        if sizes["tags"] < 3 or min(sizes["authors"], sizes["publishers"], sizes["books"]) < 1:
            raise CommandError("need at least 3 tags and 1 author, publisher and book")
        if any(v < 0 for v in sizes.values()):
            raise CommandError("sizes must not be negative")
        t0 = time.monotonic()
        with connection.cursor() as cur:
            cur.execute("SELECT EXISTS (SELECT 1 FROM shop_book)")
            if cur.fetchone()[0] and not opts["reset"]:
                self.stdout.write("seed: the shop already has books; nothing done (--reset to start over)")
                return
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute("TRUNCATE " + ", ".join(TABLES) + " RESTART IDENTITY")
            for label, sql in STEPS:
                t = time.monotonic()
                cur.execute(sql, sizes)
                if opts["verbosity"] >= 2:
                    self.stdout.write(f"  {label}: {cur.rowcount} rows in {time.monotonic() - t:.2f} s")
        t = time.monotonic()
        with connection.cursor() as cur:
            # Outside the transaction (VACUUM refuses to run in one): statistics for the
            # planner and a visibility map, as a database that has lived a while has.
            cur.execute("VACUUM ANALYZE " + ", ".join(TABLES))
        if opts["verbosity"] >= 2:
            self.stdout.write(f"  vacuum analyze: {time.monotonic() - t:.2f} s")
        self.stdout.write("seed: " + ", ".join(f"{v} {k}" for k, v in sizes.items())
                          + f" in {time.monotonic() - t0:.1f} s")
