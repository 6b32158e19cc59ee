"""The shop's own test suite, run by `manage.py test` directly against PostgreSQL
and through pgmedic in transaction mode (tests/integration/test_django.py).

ShopTests (TestCase) run each test inside a transaction that Django rolls back, so
they exercise savepoints; ShopTransactionTests (TransactionTestCase) run in
autocommit, where each statement or atomic block is its own transaction and a
transaction-mode pooler may hand every one of them a different server connection.
Those also use extra threads, each with its own database connection, for locking
and visibility between sessions.
"""
import datetime
import threading
import time
from decimal import Decimal

from django.db import DatabaseError, IntegrityError, connection, connections, transaction
from django.db.models import Avg, Count, Exists, F, Max, OuterRef, Sum
from django.db.models.deletion import ProtectedError
from django.db.models.functions import Length, Upper
from django.test import TestCase, TransactionTestCase
from django.test.utils import CaptureQueriesContext

from .models import Author, Book, Review, Tag, Tagging

UTC = datetime.timezone.utc


def make_book(author, isbn, title=None, price="10.00", stock=5, **kw):
    return Book.objects.create(author=author, isbn=isbn, title=title or f"Book {isbn}",
                               price=Decimal(price), stock=stock, **kw)


def scalar(sql, params=None):
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchone()[0]


class Worker(threading.Thread):
    """Runs fn in a thread with its own database connection (closed at the end);
    join() re-raises what fn raised and returns what it returned."""

    def __init__(self, fn, *args):
        super().__init__(daemon=True)
        self.fn, self.args = fn, args
        self.result = self.error = None

    def run(self):
        try:
            self.result = self.fn(*self.args)
        except BaseException as e:  # handed to the test thread
            self.error = e
        finally:
            connections.close_all()

    def join(self, timeout=30):
        super().join(timeout)
        if self.is_alive():
            raise AssertionError(f"worker {self.fn.__name__} still running after {timeout}s")
        if self.error is not None:
            raise self.error
        return self.result

    def start_join(self, timeout=30):
        self.start()
        return self.join(timeout)


def pgcode(exc):
    """SQLSTATE of the psycopg2 error behind a Django database exception."""
    return getattr(exc.__cause__, "pgcode", None)


class ShopTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.tolkien = Author.objects.create(name="J. R. R. Tolkien", born=datetime.date(1892, 1, 3))
        cls.le_guin = Author.objects.create(name="Ursula K. Le Guin", born=datetime.date(1929, 10, 21))
        cls.fantasy = Tag.objects.create(name="fantasy")
        cls.classic = Tag.objects.create(name="classic")
        cls.scifi = Tag.objects.create(name="sci-fi")
        cls.hobbit = make_book(cls.tolkien, "9780261102217", "The Hobbit", "8.99", 12)
        cls.lotr = make_book(cls.tolkien, "9780261103252", "The Lord of the Rings", "25.00", 3)
        cls.earthsea = make_book(cls.le_guin, "9780141354910", "A Wizard of Earthsea", "7.50", 0)
        cls.dispossessed = make_book(cls.le_guin, "9780060512750", "The Dispossessed", "11.25", 4)
        cls.hobbit.tags.add(cls.fantasy, cls.classic)
        cls.lotr.tags.add(cls.fantasy, cls.classic, through_defaults={"weight": 3})
        cls.earthsea.tags.add(cls.fantasy)
        cls.dispossessed.tags.add(cls.scifi)
        Review.objects.bulk_create([
            Review(book=cls.hobbit, rating=5, text="charming"),
            Review(book=cls.hobbit, rating=4, text="a bit slow in the middle"),
            Review(book=cls.lotr, rating=5, text="epic"),
            Review(book=cls.dispossessed, rating=3, text="dense"),
        ])

    def test_foreign_key_forward_and_reverse(self):
        self.assertEqual(Book.objects.get(isbn="9780261102217").author.name, "J. R. R. Tolkien")
        self.assertEqual(
            list(self.tolkien.books.order_by("title").values_list("title", flat=True)),
            ["The Hobbit", "The Lord of the Rings"],
        )
        self.assertEqual(
            set(Book.objects.filter(author__born__year__lt=1900).values_list("isbn", flat=True)),
            {"9780261102217", "9780261103252"},
        )
        self.assertEqual(Author.objects.filter(books__reviews__rating=3).get(), self.le_guin)
        self.assertEqual(Review.objects.filter(book__author=self.tolkien).count(), 3)

    def test_select_related_loads_author_in_the_same_query(self):
        with self.assertNumQueries(1):
            books = list(Book.objects.select_related("author").order_by("isbn"))
            names = [b.author.name for b in books]
        self.assertEqual(names, ["Ursula K. Le Guin", "Ursula K. Le Guin", "J. R. R. Tolkien", "J. R. R. Tolkien"])

    def test_prefetch_related_m2m_and_reverse_foreign_key(self):
        with self.assertNumQueries(3):  # books, their tags, their reviews
            books = list(Book.objects.prefetch_related("tags", "reviews").order_by("title"))
            summary = {b.title: ([t.name for t in b.tags.all()], sorted(r.rating for r in b.reviews.all()))
                       for b in books}
        self.assertEqual(summary, {
            "A Wizard of Earthsea": (["fantasy"], []),
            "The Dispossessed": (["sci-fi"], [3]),
            "The Hobbit": (["classic", "fantasy"], [4, 5]),
            "The Lord of the Rings": (["classic", "fantasy"], [5]),
        })
        with self.assertNumQueries(2):  # reverse M2M from the tag side
            fans = {t.name: sorted(b.isbn for b in t.books.all()) for t in Tag.objects.prefetch_related("books")}
        self.assertEqual(fans["classic"], ["9780261102217", "9780261103252"])

    def test_m2m_through_model_add_remove_set_clear(self):
        book = self.earthsea
        book.tags.add(self.classic, through_defaults={"weight": 7})
        self.assertEqual(Tagging.objects.get(book=book, tag=self.classic).weight, 7)
        self.assertEqual(set(book.tags.values_list("name", flat=True)), {"fantasy", "classic"})
        book.tags.add(self.classic)  # already there: no duplicate row, weight kept
        self.assertEqual(Tagging.objects.filter(book=book, tag=self.classic).count(), 1)
        book.tags.remove(self.fantasy)
        self.assertEqual(list(book.tags.values_list("name", flat=True)), ["classic"])
        book.tags.set([self.scifi, self.fantasy])
        self.assertEqual(list(book.tags.values_list("name", flat=True)), ["fantasy", "sci-fi"])
        self.assertEqual(self.scifi.books.count(), 2)
        book.tags.clear()
        self.assertFalse(Tagging.objects.filter(book=book).exists())
        # the other books' taggings are untouched
        self.assertEqual(Tagging.objects.count(), 5)
        self.assertEqual(Tagging.objects.get(book=self.lotr, tag=self.fantasy).weight, 3)

    def test_auto_created_m2m_and_its_reverse(self):
        self.le_guin.favourite_tags.add(self.scifi, self.fantasy)
        self.tolkien.favourite_tags.add(self.fantasy)
        self.assertEqual(set(self.fantasy.fans.values_list("name", flat=True)),
                         {"J. R. R. Tolkien", "Ursula K. Le Guin"})
        self.le_guin.favourite_tags.remove(self.fantasy)
        self.assertEqual(list(self.fantasy.fans.all()), [self.tolkien])
        self.assertEqual(list(Author.objects.filter(favourite_tags__name="sci-fi")), [self.le_guin])
        self.scifi.fans.clear()
        self.assertEqual(self.le_guin.favourite_tags.count(), 0)

    def test_integrity_error_inside_atomic_keeps_outer_transaction_usable(self):
        before = Book.objects.count()
        with self.assertRaises(IntegrityError) as cm:
            with transaction.atomic():
                make_book(self.tolkien, "9780000000001", "Unfinished Tales")
                make_book(self.tolkien, "9780261102217", "Duplicate ISBN")
        self.assertEqual(pgcode(cm.exception), "23505")  # unique_violation
        # Only the savepoint was rolled back: the outer (test) transaction still works
        # and the first insert of the failed block is gone too.
        self.assertEqual(Book.objects.count(), before)
        self.assertFalse(Book.objects.filter(isbn="9780000000001").exists())
        make_book(self.tolkien, "9780000000002", "The Silmarillion")
        self.assertEqual(Book.objects.count(), before + 1)

    def test_check_and_foreign_key_violations_are_integrity_errors(self):
        with self.assertRaises(IntegrityError) as cm:
            with transaction.atomic():
                Book.objects.filter(pk=self.hobbit.pk).update(stock=F("stock") - 100)
        self.assertEqual(pgcode(cm.exception), "23514")  # check_violation
        with self.assertRaises(IntegrityError) as cm:
            with transaction.atomic():
                Review.objects.create(book=self.hobbit, rating=6)
        self.assertEqual(pgcode(cm.exception), "23514")
        with self.assertRaises(IntegrityError) as cm:
            with transaction.atomic():
                Review.objects.create(book_id=987654321, rating=2)
                # Django's FKs are DEFERRABLE INITIALLY DEFERRED: check them now
                connection.check_constraints()
        self.assertEqual(pgcode(cm.exception), "23503")  # foreign_key_violation
        self.hobbit.refresh_from_db()
        self.assertEqual(self.hobbit.stock, 12)
        self.assertEqual(self.hobbit.reviews.count(), 2)

    def test_nested_atomic_savepoints(self):
        with transaction.atomic():
            Tag.objects.create(name="outer")
            try:
                with transaction.atomic():
                    Tag.objects.create(name="inner-rolled-back")
                    with transaction.atomic():
                        Tag.objects.create(name="innermost-rolled-back")
                    raise RuntimeError("roll back the middle block")
            except RuntimeError:
                pass
            with transaction.atomic():
                Tag.objects.create(name="inner-kept")
                with transaction.atomic(savepoint=False):
                    Tag.objects.create(name="no-savepoint-kept")
        names = set(Tag.objects.values_list("name", flat=True))
        self.assertTrue({"outer", "inner-kept", "no-savepoint-kept"} <= names)
        self.assertFalse({"inner-rolled-back", "innermost-rolled-back"} & names)

    def test_manual_savepoints(self):
        self.assertTrue(connection.in_atomic_block)
        sid = transaction.savepoint()
        Author.objects.filter(pk=self.tolkien.pk).update(name="Renamed")
        transaction.savepoint_rollback(sid)
        self.assertEqual(Author.objects.get(pk=self.tolkien.pk).name, "J. R. R. Tolkien")
        sid = transaction.savepoint()
        Author.objects.filter(pk=self.tolkien.pk).update(name="Renamed")
        transaction.savepoint_commit(sid)
        self.assertEqual(Author.objects.get(pk=self.tolkien.pk).name, "Renamed")

    def test_select_for_update_inside_atomic(self):
        with CaptureQueriesContext(connection) as ctx:
            with transaction.atomic():
                book = Book.objects.select_for_update(of=("self",)).select_related("author").get(pk=self.lotr.pk)
                self.assertEqual(book.author, self.tolkien)
                book.stock -= 1
                book.save(update_fields=["stock"])
        sql = [q["sql"] for q in ctx.captured_queries]
        self.assertTrue(any('FOR UPDATE OF "shop_book"' in s for s in sql), sql)
        self.assertEqual(Book.objects.get(pk=self.lotr.pk).stock, 2)
        # SKIP LOCKED and NOWAIT are accepted too (nothing else holds these rows)
        with transaction.atomic():
            locked = list(Book.objects.select_for_update(skip_locked=True).filter(stock__gt=0).order_by("pk"))
            self.assertEqual([b.pk for b in locked], [self.hobbit.pk, self.lotr.pk, self.dispossessed.pk])
            self.assertEqual(Book.objects.select_for_update(nowait=True).filter(pk=self.earthsea.pk).count(), 1)

    def test_bulk_create_and_bulk_update(self):
        tags = Tag.objects.bulk_create([Tag(name=f"bulk-{i:03d}") for i in range(50)])
        self.assertTrue(all(t.pk is not None for t in tags))  # RETURNING ids
        self.assertEqual(len({t.pk for t in tags}), 50)
        self.assertEqual(Tag.objects.filter(name__startswith="bulk-").count(), 50)
        for t in tags:
            t.name = t.name.replace("bulk-", "renamed-")
        self.assertEqual(Tag.objects.bulk_update(tags, ["name"], batch_size=16), 50)
        self.assertEqual(Tag.objects.filter(name__startswith="renamed-").count(), 50)
        # ignore_conflicts skips the existing names and inserts the new one
        Tag.objects.bulk_create([Tag(name="fantasy"), Tag(name="renamed-007"), Tag(name="poetry")],
                                ignore_conflicts=True)
        self.assertEqual(Tag.objects.count(), 3 + 50 + 1)

    def test_update_and_delete_with_cascade_and_protect(self):
        updated = Book.objects.filter(author=self.tolkien).update(price=F("price") * 2, stock=F("stock") + 1)
        self.assertEqual(updated, 2)
        self.hobbit.refresh_from_db()
        self.assertEqual((self.hobbit.price, self.hobbit.stock), (Decimal("17.98"), 13))
        with self.assertRaises(ProtectedError):
            self.tolkien.delete()
        deleted, per_model = self.hobbit.delete()
        self.assertEqual(per_model, {"shop.Book": 1, "shop.Review": 2, "shop.Tagging": 2})
        self.assertEqual(deleted, 5)
        self.assertEqual(Review.objects.count(), 2)
        Book.objects.filter(author=self.tolkien).delete()
        self.tolkien.delete()
        self.assertFalse(Author.objects.filter(name__startswith="J. R. R.").exists())

    def test_aggregate_and_annotate(self):
        totals = Book.objects.aggregate(n=Count("id"), stock=Sum("stock"), top=Max("price"), avg=Avg("price"))
        self.assertEqual(totals["n"], 4)
        self.assertEqual(totals["stock"], 19)
        self.assertEqual(totals["top"], Decimal("25.00"))
        self.assertAlmostEqual(float(totals["avg"]), (8.99 + 25.00 + 7.50 + 11.25) / 4, places=6)
        rows = (Author.objects.annotate(n_books=Count("books", distinct=True),
                                        n_reviews=Count("books__reviews"),
                                        avg_rating=Avg("books__reviews__rating"))
                .order_by("name").values_list("name", "n_books", "n_reviews", "avg_rating"))
        (t_name, t_books, t_reviews, t_avg), (l_name, l_books, l_reviews, l_avg) = rows
        self.assertEqual((t_name, t_books, t_reviews), ("J. R. R. Tolkien", 2, 3))
        self.assertAlmostEqual(t_avg, 14 / 3, places=6)
        self.assertEqual((l_name, l_books, l_reviews, l_avg), ("Ursula K. Le Guin", 2, 1, 3.0))
        reviewed = Book.objects.annotate(has_reviews=Exists(Review.objects.filter(book=OuterRef("pk"))))
        self.assertEqual(set(reviewed.filter(has_reviews=False).values_list("title", flat=True)),
                         {"A Wizard of Earthsea"})
        per_tag = dict(Tag.objects.annotate(n=Count("books")).values_list("name", "n"))
        self.assertEqual(per_tag, {"classic": 2, "fantasy": 3, "sci-fi": 1})
        heavy = Tagging.objects.filter(weight__gt=1).aggregate(w=Sum("weight"))
        self.assertEqual(heavy["w"], 6)

    def test_unicode_round_trip(self):
        names = [
            "Łódź — Zażółć gęślą jaźń",
            "東京の本屋",
            "Ελληνικά κείμενα",
            "Emoji 📚🐉✨ outside the BMP",
            "Quote ' and backslash \\ and percent % and underscore _",
            "Combining: e\u0301 vs \u00e9",
        ]
        for i, name in enumerate(names):
            make_book(self.le_guin, f"97900000001{i:02d}", title=name, metadata={"title": name, "i": i})
        for i, name in enumerate(names):
            book = Book.objects.get(isbn=f"97900000001{i:02d}")
            self.assertEqual(book.title, name)
            self.assertEqual(book.metadata, {"title": name, "i": i})
            self.assertEqual(Book.objects.annotate(n=Length("title")).get(pk=book.pk).n, len(name))
        self.assertEqual(Book.objects.get(title__contains="📚🐉").isbn, "9790000000103")
        self.assertEqual(Book.objects.get(title__contains="% and underscore _").isbn, "9790000000104")
        self.assertEqual(Book.objects.filter(title__startswith="東京").count(), 1)
        self.assertEqual(Book.objects.filter(metadata__title="Ελληνικά κείμενα").get().isbn, "9790000000102")
        self.assertEqual(Book.objects.annotate(u=Upper("title")).get(isbn="9780261102217").u, "THE HOBBIT")

    def test_raw_cursor_queries(self):
        with connection.cursor() as cur:
            cur.execute(
                "SELECT a.name, count(b.id), coalesce(sum(b.stock), 0) FROM shop_author a "
                "LEFT JOIN shop_book b ON b.author_id = a.id WHERE a.name <> %s GROUP BY a.name ORDER BY a.name",
                ["nobody's name"],
            )
            self.assertEqual(cur.fetchall(), [("J. R. R. Tolkien", 2, 15), ("Ursula K. Le Guin", 2, 4)])
            cur.executemany("INSERT INTO shop_tag (name) VALUES (%s)", [("raw-1",), ("raw-ü",), ("raw-'q'",)])
            cur.execute("SELECT %s::text || %s::text, %s::int + 1, %s::numeric * 2",
                        ["päärynä", "🍐", 41, Decimal("1.25")])
            self.assertEqual(cur.fetchone(), ("päärynä🍐", 42, Decimal("2.50")))
        self.assertEqual(set(Tag.objects.filter(name__startswith="raw-").values_list("name", flat=True)),
                         {"raw-1", "raw-ü", "raw-'q'"})
        books = Book.objects.raw("SELECT * FROM shop_book WHERE price > %s ORDER BY price DESC", [Decimal("10")])
        self.assertEqual([b.title for b in books], ["The Lord of the Rings", "The Dispossessed"])
        self.assertEqual(scalar("SELECT count(*) FROM shop_review WHERE rating >= %s", [4]), 3)

    def test_iterator_with_chunk_size(self):
        Book.objects.bulk_create([
            Book(author=self.le_guin, isbn=f"979100000{i:04d}", title=f"Iter {i:04d}", price=Decimal(i) / 100,
                 stock=i) for i in range(1, 121)
        ])
        self.assertEqual(connection.settings_dict["DISABLE_SERVER_SIDE_CURSORS"], True)
        qs = Book.objects.filter(title__startswith="Iter ").order_by("isbn")
        seen = [b.stock for b in qs.iterator(chunk_size=7)]
        self.assertEqual(seen, list(range(1, 121)))
        self.assertEqual(list(qs.values_list("stock", flat=True).iterator(chunk_size=50))[-3:], [118, 119, 120])
        # prefetch_related with iterator(): one prefetch query per chunk
        for b in Book.objects.filter(title__startswith="Iter ")[:30]:
            b.tags.add(self.fantasy)
        with self.assertNumQueries(1 + 5):  # 120 rows in chunks of 25
            tagged = sum(len(b.tags.all()) for b in qs.prefetch_related("tags").iterator(chunk_size=25))
        self.assertEqual(tagged, 30)

    def test_json_field_lookups(self):
        make_book(self.le_guin, "9790000000900", metadata={"format": "paperback", "pages": 352,
                                                          "awards": ["Hugo", "Nebula"], "series": None})
        make_book(self.le_guin, "9790000000901", metadata={"format": "hardcover", "pages": 180})
        self.assertEqual(Book.objects.get(metadata__format="paperback").isbn, "9790000000900")
        self.assertEqual(Book.objects.filter(metadata__pages__gt=200).count(), 1)
        self.assertEqual(Book.objects.filter(metadata__awards__contains=["Nebula"]).count(), 1)
        self.assertEqual(Book.objects.filter(metadata__has_key="awards").count(), 1)
        self.assertEqual(Book.objects.filter(metadata__series__isnull=False).count(), 1)  # JSON null is a value
        self.assertEqual(Book.objects.get(isbn="9790000000900").metadata["awards"], ["Hugo", "Nebula"])

    def test_aware_datetimes_round_trip_in_utc(self):
        # Django sets the session's TimeZone to UTC when it connects (if the server
        # says otherwise) and psycopg2 then labels every timestamptz it reads as UTC
        # without looking at the offset: if the setting were lost, this would shift.
        self.assertEqual(scalar("SELECT current_setting('TimeZone')"), "UTC")
        when = datetime.datetime(2024, 2, 29, 23, 30, 15, 123456, tzinfo=UTC)
        make_book(self.le_guin, "9790000000800", published_at=when)
        got = Book.objects.get(isbn="9790000000800").published_at
        self.assertEqual(got, when)
        self.assertEqual(got.utcoffset(), datetime.timedelta(0))
        self.assertEqual(Book.objects.filter(published_at__date=datetime.date(2024, 2, 29)).count(), 1)
        self.assertEqual(Book.objects.filter(published_at__hour=23).count(), 1)
        review = Review.objects.create(book=self.earthsea, rating=4)
        review.refresh_from_db()
        self.assertLess(abs((datetime.datetime.now(UTC) - review.created_at).total_seconds()), 300)

    def test_get_or_create_and_update_or_create(self):
        tag, created = Tag.objects.get_or_create(name="fantasy")
        self.assertEqual((tag, created), (self.fantasy, False))
        tag, created = Tag.objects.get_or_create(name="horror")
        self.assertTrue(created)
        book, created = Book.objects.update_or_create(
            isbn="9780261102217", defaults={"stock": 99, "author": self.tolkien, "price": Decimal("9.99")})
        self.assertFalse(created)
        self.assertEqual((book.pk, book.stock), (self.hobbit.pk, 99))
        book, created = Book.objects.update_or_create(
            isbn="9790000000700", defaults={"title": "New", "author": self.le_guin, "price": Decimal("1.00")})
        self.assertTrue(created)
        self.assertEqual(Book.objects.count(), 5)


class ShopTransactionTests(TransactionTestCase):
    """Autocommit mode: every atomic block is a real transaction that commits."""

    def setUp(self):
        self.author = Author.objects.create(name="Iain M. Banks")
        self.books = [make_book(self.author, f"97818575{i:05d}", f"Culture {i}", stock=10) for i in range(3)]

    def test_committed_atomic_block_is_visible_to_another_connection(self):
        self.assertTrue(connection.get_autocommit())
        with transaction.atomic():
            Tag.objects.create(name="space opera")
            Book.objects.filter(pk=self.books[0].pk).update(stock=7)
            # not committed yet: another session does not see it
            self.assertEqual(Worker(lambda: Tag.objects.filter(name="space opera").count()).start_join(), 0)
        self.assertEqual(Worker(lambda: Tag.objects.filter(name="space opera").count()).start_join(), 1)
        self.assertEqual(Worker(lambda: Book.objects.get(pk=self.books[0].pk).stock).start_join(), 7)

    def test_exception_in_atomic_rolls_everything_back(self):
        calls = []
        with self.assertRaises(ZeroDivisionError):
            with transaction.atomic():
                Tag.objects.create(name="doomed")
                self.books[1].tags.add(Tag.objects.create(name="doomed too"))
                transaction.on_commit(lambda: calls.append("committed"))
                1 / 0
        self.assertEqual(calls, [])
        self.assertFalse(Tag.objects.filter(name__startswith="doomed").exists())
        self.assertEqual(Tagging.objects.count(), 0)
        with transaction.atomic():
            Tag.objects.create(name="survivor")
            transaction.on_commit(lambda: calls.append("committed"))
            self.assertEqual(calls, [])  # only after COMMIT
        self.assertEqual(calls, ["committed"])
        self.assertEqual(Worker(lambda: list(Tag.objects.values_list("name", flat=True))).start_join(),
                         ["survivor"])

    def test_integrity_error_in_atomic_then_connection_still_usable(self):
        with self.assertRaises(IntegrityError) as cm:
            with transaction.atomic():
                Tag.objects.create(name="unique-a")
                Author.objects.create(name="Iain M. Banks")
        self.assertEqual(pgcode(cm.exception), "23505")
        self.assertFalse(Tag.objects.filter(name="unique-a").exists())
        # the failed transaction is over; autocommit statements work again
        with self.assertRaises(IntegrityError):
            Author.objects.create(name="Iain M. Banks")
        self.assertEqual(Author.objects.count(), 1)
        Author.objects.create(name="Ken MacLeod")
        self.assertEqual(Author.objects.count(), 2)
        # a savepoint inside a real transaction: only the inner block is lost
        with transaction.atomic():
            Tag.objects.create(name="kept")
            try:
                with transaction.atomic():
                    make_book(self.author, self.books[0].isbn)
            except IntegrityError:
                pass
            Tag.objects.create(name="kept too")
        self.assertEqual(set(Tag.objects.values_list("name", flat=True)), {"kept", "kept too"})

    def test_select_for_update_outside_atomic_raises(self):
        from django.db.transaction import TransactionManagementError

        self.assertTrue(connection.get_autocommit())
        with self.assertRaisesMessage(TransactionManagementError, "select_for_update cannot be used outside"):
            list(Book.objects.select_for_update().filter(pk=self.books[0].pk))
        with transaction.atomic():
            self.assertEqual(len(Book.objects.select_for_update().filter(pk=self.books[0].pk)), 1)

    def test_select_for_update_nowait_and_skip_locked_against_another_session(self):
        target = self.books[1].pk

        def try_nowait():
            with transaction.atomic():
                try:
                    return Book.objects.select_for_update(nowait=True).get(pk=target).stock
                except DatabaseError as e:
                    return pgcode(e)

        def skip_locked():
            with transaction.atomic():
                return [b.pk for b in Book.objects.select_for_update(skip_locked=True).order_by("pk")]

        with transaction.atomic():
            Book.objects.select_for_update().get(pk=target)
            self.assertEqual(Worker(try_nowait).start_join(), "55P03")  # lock_not_available
            self.assertEqual(Worker(skip_locked).start_join(), [self.books[0].pk, self.books[2].pk])
        self.assertEqual(Worker(try_nowait).start_join(), 10)
        self.assertEqual(Worker(skip_locked).start_join(), [b.pk for b in self.books])

    def test_select_for_update_serializes_concurrent_increments(self):
        pk = self.books[2].pk
        first_locked = threading.Event()

        def first():
            with transaction.atomic():
                book = Book.objects.select_for_update().get(pk=pk)
                first_locked.set()
                time.sleep(0.5)  # hold the row lock while the second one waits
                book.stock += 1
                book.save(update_fields=["stock"])
            return book.stock

        def second():
            if not first_locked.wait(10):
                raise AssertionError("first worker never locked the row")
            start = time.monotonic()
            with transaction.atomic():
                book = Book.objects.select_for_update().get(pk=pk)
                waited = time.monotonic() - start
                seen = book.stock
                book.stock += 1
                book.save(update_fields=["stock"])
            return seen, waited

        a, b = Worker(first), Worker(second)
        a.start()
        b.start()
        self.assertEqual(a.join(), 11)
        seen, waited = b.join()
        self.assertEqual(seen, 11)  # read after the first one committed: no lost update
        self.assertGreater(waited, 0.2)  # it really waited for the lock
        self.assertEqual(Book.objects.get(pk=pk).stock, 12)

    def test_iterator_in_autocommit_does_not_use_server_side_cursors(self):
        Tag.objects.bulk_create([Tag(name=f"it-{i:04d}") for i in range(500)])
        self.assertTrue(connection.get_autocommit())
        names, open_cursors = [], []
        for i, tag in enumerate(Tag.objects.order_by("name").iterator(chunk_size=64)):
            names.append(tag.name)
            if i in (0, 200, 499):
                # a named cursor (DECLARE ... WITH HOLD) would be listed here
                open_cursors.append(scalar("SELECT count(*) FROM pg_cursors"))
        self.assertEqual(names, [f"it-{i:04d}" for i in range(500)])
        self.assertEqual(open_cursors, [0, 0, 0])

    def test_session_time_zone_holds_for_every_transaction_of_every_connection(self):
        when = datetime.datetime(2023, 7, 1, 4, 5, 6, tzinfo=UTC)
        Book.objects.filter(pk=self.books[0].pk).update(published_at=when)

        def client(n):
            seen = set()
            for i in range(n):
                seen.add(scalar("SELECT current_setting('TimeZone')"))
                with transaction.atomic():
                    seen.add(Book.objects.get(pk=self.books[0].pk).published_at)
            return seen

        workers = [Worker(client, 25) for _ in range(4)]
        for w in workers:
            w.start()
        mine = client(25)
        results = [mine] + [w.join() for w in workers]
        for seen in results:
            self.assertEqual(seen, {"UTC", when})
