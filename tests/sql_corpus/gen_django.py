#!/usr/bin/python3
"""Generate tests/sql_corpus/django.jsonl: the SQL Django 4.2 (psycopg2) sends for a few
thousand randomized ORM operations on the bookstore example (examples/bookstore).

    /usr/bin/python3 tests/sql_corpus/gen_django.py [--out FILE] [--ops N] [--seed S]

Uses PGHOST/PGPORT(/PGUSER/PGPASSWORD) when given, else starts a private cluster with
scripts/pgtmp.sh and stops it at the end. A fresh database is created (and dropped at the
end), `migrate` runs into it, a little data is loaded, then the ORM operations run. The
statements are recorded on the wire (gen_common.WireTap), so they are exactly what the
server received, driver-issued BEGIN/COMMIT/ROLLBACK and named-cursor DECLARE/FETCH
included. Exact duplicates are dropped; every line is checked with libpg_query.
"""
import argparse
import datetime as dt
import os
import random
import sys
import types
from decimal import Decimal

import gen_common

DB_NAME = "pgmedic_corpus_django"
BOOKSTORE = os.path.join(gen_common.ROOT, "examples", "bookstore")

# ----------------------------------------------------------------------------- values

STRING_BITS = [
    "Dune", "Emma", "Ulysses", "The Hobbit", "War and Peace", "Lolita", "Beloved",
    "O'Reilly", "it's", "don''t", "back\\slash", "C:\\temp\\new", "trailing\\",
    "naïve café", "Straße", "Ærøskøbing", "日本語の本", "Война и мир", "مرحبا", "שלום",
    "📚 books", "emoji 😀🎉", "🇫🇷 drapeau", "100%", "50% off_sale", "under_score",
    "\"double\" quotes", "semi;colon", "dash -- not a comment", "/* not a comment */",
    "$$dollar$$", "$1 placeholder", "%s percent-s", "tab\there", "line\nbreak",
    "  spaces  ", "", "x", "E'x'", "U&'x'", "null", "NULL", "true", "?", ":name",
]
DOMAINS = ["example.com", "exämple.org", "mail.test", "o'hara.ie", "xn--bcher-kva.de"]
COUNTRIES = ["France", "Germany", "Japan", "USA", "Côte d'Ivoire", "España", "Россия", ""]
ZONES = [dt.timezone.utc, dt.timezone(dt.timedelta(hours=2)), dt.timezone(dt.timedelta(hours=-5)),
         dt.timezone(dt.timedelta(hours=5, minutes=30)), dt.timezone(dt.timedelta(hours=-9, minutes=-30)),
         dt.timezone(dt.timedelta(hours=13, minutes=45))]
STATUSES = ["pending", "published", "hidden"]
ORDER_STATUSES = ["new", "paid", "shipped", "cancelled"]


class Values:
    def __init__(self, rng):
        self.r = rng

    def text(self, words=(1, 3)):
        return " ".join(self.r.choice(STRING_BITS) for _ in range(self.r.randint(*words)))

    def word(self):
        return self.r.choice([b for b in STRING_BITS if b.strip()] + ["a", "the", "of", "and"])

    def email(self):
        return f"{self.r.choice(['ann', 'bob', 'zoë', 'o.brien', 'li+tag', 'ünïcode'])}{self.r.randint(1, 9999)}@{self.r.choice(DOMAINS)}"

    def price(self):
        return Decimal(self.r.randint(0, 99999)) / 100

    def signed(self, lo=-1000, hi=1000):
        return self.r.randint(lo, hi)

    def date(self):
        return dt.date(1900, 1, 1) + dt.timedelta(days=self.r.randint(0, 125 * 365))

    def datetime(self):
        base = dt.datetime(2015, 1, 1, tzinfo=dt.timezone.utc)
        d = base + dt.timedelta(seconds=self.r.randint(0, 10 * 365 * 86400),
                                microseconds=self.r.choice([0, 0, self.r.randint(0, 999999)]))
        return d.astimezone(self.r.choice(ZONES))

    def ids(self, hi, n=None):
        n = n if n is not None else self.r.choice([0, 1, 1, 2, 3, 4, 5, 7, 10, 16, 25, 50])
        return [self.r.randint(-5, hi + 20) for _ in range(n)]

    def isbn(self):
        return "978-" + "".join(str(self.r.randint(0, 9)) for _ in range(10))

    def regex(self):
        return self.r.choice(["^The", "[0-9]+", "(?i)dune", "^.{3,5}$", "war|peace", "\\d{2}",
                              "^[A-Z]", "é$", "\\s\\w+", "😀", "a.*b", "^$"])


# ----------------------------------------------------------------------------- Django setup

def setup_django(tap_port):
    os.environ.update(PGHOST="127.0.0.1", PGPORT=str(tap_port), PGDATABASE=DB_NAME)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bookstore.settings")
    sys.path.insert(0, BOOKSTORE)

    # Reproducibility: the clock (django_migrations.applied) and the thread ident used in
    # savepoint and named-cursor names would otherwise change from run to run.
    import django.utils.timezone as tz
    clock = {"t": dt.datetime(2024, 3, 1, 12, 0, 0, tzinfo=dt.timezone.utc)}

    def fixed_now():
        clock["t"] += dt.timedelta(milliseconds=1237)
        return clock["t"]
    tz.now = fixed_now

    sys.modules.setdefault("psycopg", None)   # as bookstore/settings.py does (DESIGN.md)
    import django.db.backends.base.base as bb
    import django.db.backends.postgresql.base as pb
    fake_ident = 139872345612345
    bb._thread = types.SimpleNamespace(get_ident=lambda: fake_ident)
    pb.threading = types.SimpleNamespace(
        current_thread=lambda: types.SimpleNamespace(ident=fake_ident))
    import django
    django.setup()


# ----------------------------------------------------------------------------- workload

def load_data(v, m):
    from django.db import transaction
    r = v.r
    pubs = m.Publisher.objects.bulk_create(
        [m.Publisher(name=f"{v.text((1, 2))} Press {i}", country=r.choice(COUNTRIES)) for i in range(8)])
    authors = m.Author.objects.bulk_create(
        [m.Author(name=f"{v.text((1, 2))} {i}", email=v.email(), bio=v.text((0, 6)),
                  born=r.choice([None, v.date()])) for i in range(30)])
    tags = m.Tag.objects.bulk_create([m.Tag(name=f"tag-{i}-{v.word()}") for i in range(15)])
    books = []
    for chunk in (1, 7, 20, 33, 59):
        books += m.Book.objects.bulk_create(
            [m.Book(title=v.text(), isbn=v.isbn(), price=v.price(), published=r.choice([None, v.date()]),
                    author=r.choice(authors), publisher=r.choice(pubs)) for _ in range(chunk)])
    for b in books[:60]:
        b.tags.add(*r.sample(tags, r.randint(0, 4)))
    with transaction.atomic():
        m.Review.objects.bulk_create(
            [m.Review(book=r.choice(books), rating=r.randint(1, 5), status=r.choice(STATUSES),
                      body=v.text((0, 8)), created_at=v.datetime()) for _ in range(400)])
    for _ in range(40):
        with transaction.atomic():
            o = m.Order.objects.create(customer_email=v.email(), created_at=v.datetime(),
                                       status=r.choice(ORDER_STATUSES))
            m.OrderLine.objects.bulk_create(
                [m.OrderLine(order=o, book=b, quantity=r.randint(1, 5), unit_price=b.price)
                 for b in r.sample(books, r.randint(1, 6))])


def make_ops(v, m):
    """Return a list of (weight, callable) ORM operations using random values from `v`."""
    from django.db import connection, transaction, IntegrityError
    from django.db.models import (Avg, Case, CharField, Count, DecimalField, Exists, F, IntegerField,
                                  JSONField, Max, Min, OuterRef, Prefetch, Q, StdDev, Subquery, Sum,
                                  Value, When, Window)
    from django.db.models.functions import (Cast, Coalesce, Concat, ExtractYear, Greatest, Length, Lower,
                                            Now, Replace, RowNumber, Rank, StrIndex, Substr, TruncDate,
                                            TruncMonth, TruncYear, Upper)
    r = v.r
    Author, Publisher, Tag, Book, Review, Order, OrderLine = (
        m.Author, m.Publisher, m.Tag, m.Book, m.Review, m.Order, m.OrderLine)

    def nbooks():
        return Book.objects.count() + 5

    def book_id():
        return r.randint(1, 130)

    text_lookups = ["exact", "iexact", "contains", "icontains", "startswith", "istartswith",
                    "endswith", "iendswith"]
    cmp_lookups = ["gt", "gte", "lt", "lte"]

    def op_get():
        try:
            r.choice([Book, Author, Publisher, Tag, Review, Order])._default_manager.get(pk=r.randint(-3, 500))
        except Exception:
            pass

    def op_text_lookup():
        model, field = r.choice([(Book, "title"), (Author, "name"), (Author, "email"), (Publisher, "name"),
                                 (Publisher, "country"), (Tag, "name"), (Review, "body")])
        qs = model.objects.filter(**{f"{field}__{r.choice(text_lookups)}": v.word()})
        if r.random() < 0.4:
            qs = qs.exclude(**{f"{field}__{r.choice(text_lookups)}": v.word()})
        list(qs[: r.choice([1, 5, 10, 20, 21, 100])])

    def op_cmp():
        f, val = r.choice([("price", v.price()), ("published", v.date()), ("id", v.signed(-50, 300)),
                           ("reviews__rating", r.randint(-1, 6)), ("reviews__created_at", v.datetime())])
        list(Book.objects.filter(**{f"{f}__{r.choice(cmp_lookups)}": val}).order_by(r.choice(["id", "-price", "title"]))[:r.randint(1, 30)])

    def op_range():
        a, b = sorted([v.price(), v.price()])
        list(Book.objects.filter(price__range=(a, b)))
        d1, d2 = sorted([v.datetime(), v.datetime()])
        list(Review.objects.filter(created_at__range=(d1, d2)).values_list("id", flat=True))

    def op_in():
        model = r.choice([Book, Author, Review, Tag])
        ids = v.ids(400)
        list(model.objects.filter(pk__in=ids))
        if r.random() < 0.3:
            list(Book.objects.filter(tags__name__in=[v.word() for _ in range(r.randint(1, 6))]).distinct())
        if r.random() < 0.3:
            list(Review.objects.filter(status__in=r.sample(STATUSES, r.randint(1, 3)),
                                       rating__in=r.sample(range(1, 6), r.randint(1, 5))))

    def op_isnull():
        list(Book.objects.filter(published__isnull=r.choice([True, False])).filter(
            author__born__isnull=r.choice([True, False]))[:r.randint(1, 50)])

    def op_dates():
        kind = r.randint(0, 5)
        if kind == 0:
            list(Book.objects.filter(published__year=r.randint(1900, 2030)))
        elif kind == 1:
            list(Review.objects.filter(created_at__month=r.randint(1, 12), created_at__year__gte=r.randint(2014, 2026)))
        elif kind == 2:
            list(Review.objects.filter(created_at__date=v.date()))
        elif kind == 3:
            list(Author.objects.filter(born__lt=v.date(), born__day=r.randint(1, 31)))
        elif kind == 4:
            list(Order.objects.filter(created_at__gte=v.datetime(), created_at__week_day=r.randint(1, 7)))
        else:
            list(Review.objects.filter(created_at__hour__gte=r.randint(0, 23), created_at__quarter=r.randint(1, 4)))

    def op_regex():
        lookup = r.choice(["regex", "iregex"])
        list(Book.objects.filter(**{f"title__{lookup}": v.regex()}))

    def op_q():
        q1 = Q(title__icontains=v.word()) | Q(price__lt=v.price())
        q2 = Q(published__gte=v.date()) & ~Q(author__name__startswith=v.word())
        q3 = Q(pk__in=v.ids(200, r.randint(1, 8))) | Q(tags__name=v.word())
        q = r.choice([q1, q2, q3, q1 & q2, q1 | q3, ~q2, (q1 | q2) & ~q3])
        list(Book.objects.filter(q).distinct()[:r.randint(1, 25)])

    def op_f():
        kind = r.randint(0, 3)
        if kind == 0:
            list(Book.objects.filter(price__gt=F("author__id") * Decimal(r.randint(1, 9)) + v.signed(-20, 20)))
        elif kind == 1:
            list(OrderLine.objects.filter(unit_price__lt=F("book__price") - v.price()))
        elif kind == 2:
            Book.objects.filter(pk=book_id()).update(price=F("price") + Decimal(v.signed(-500, 500)) / 100)
        else:
            Review.objects.filter(book_id=book_id(), rating__lt=5).update(rating=F("rating") + r.choice([1, -1, 2]))

    def op_annotate():
        kind = r.randint(0, 5)
        if kind == 0:
            list(Author.objects.annotate(n=Count("book")).filter(n__gte=r.randint(0, 6)).order_by("-n")[:r.randint(1, 10)])
        elif kind == 1:
            list(Book.objects.annotate(avg=Avg("reviews__rating"), n=Count("reviews", filter=Q(reviews__status=r.choice(STATUSES))))
                 .filter(avg__gte=r.choice([1, 2.5, 3, 4.25, 4.9])))
        elif kind == 2:
            list(Publisher.objects.annotate(total=Sum("books__price"), top=Max("books__price"), low=Min("books__price"))
                 .filter(total__gt=v.price()))
        elif kind == 3:
            list(Order.objects.annotate(total=Sum(F("lines__quantity") * F("lines__unit_price"), output_field=DecimalField()))
                 .filter(total__gt=Decimal(r.randint(0, 50000)) / 100, status=r.choice(ORDER_STATUSES)))
        elif kind == 4:
            list(Tag.objects.annotate(n=Count("book", distinct=True)).filter(n__lt=r.randint(0, 20)).values("name", "n"))
        else:
            list(Book.objects.values("publisher__country").annotate(n=Count("id"), sd=StdDev("price"))
                 .filter(n__gt=r.randint(0, 5)).order_by("publisher__country"))

    def op_aggregate():
        r.choice([
            lambda: Book.objects.filter(price__gt=v.price()).aggregate(Avg("price"), Max("published")),
            lambda: Review.objects.filter(book_id=book_id()).aggregate(avg=Avg("rating"), n=Count("id")),
            lambda: OrderLine.objects.filter(order__status=r.choice(ORDER_STATUSES)).aggregate(
                total=Sum(F("quantity") * F("unit_price"))),
            lambda: Author.objects.aggregate(oldest=Min("born"), youngest=Max("born")),
        ])()

    def op_subquery():
        kind = r.randint(0, 3)
        if kind == 0:
            latest = Review.objects.filter(book=OuterRef("pk"), status=r.choice(STATUSES)).order_by("-created_at")
            list(Book.objects.annotate(last_rating=Subquery(latest.values("rating")[:1]))
                 .filter(last_rating__gte=r.randint(1, 5))[:r.randint(1, 40)])
        elif kind == 1:
            good = Review.objects.filter(book=OuterRef("pk"), rating__gte=r.randint(1, 5))
            list(Book.objects.filter(Exists(good), price__lt=v.price()))
        elif kind == 2:
            list(Author.objects.annotate(has_cheap=Exists(Book.objects.filter(author=OuterRef("pk"), price__lt=v.price())))
                 .filter(has_cheap=r.choice([True, False])))
        else:
            list(Book.objects.filter(author__in=Subquery(Author.objects.filter(name__icontains=v.word()).values("pk"))))

    def op_window():
        kind = r.randint(0, 2)
        if kind == 0:
            list(Book.objects.annotate(rn=Window(RowNumber(), partition_by=[F("author_id")], order_by=F("price").desc()))
                 .filter(price__gt=v.price()).values("id", "rn")[:r.randint(1, 30)])
        elif kind == 1:
            list(Review.objects.annotate(rk=Window(Rank(), partition_by=[F("book_id")], order_by=[F("rating").desc(), F("created_at").asc()]))
                 .filter(book_id__in=v.ids(130, r.randint(1, 6))))
        else:
            list(Book.objects.annotate(running=Window(Sum("price"), order_by=F("published").asc(nulls_last=True)))
                 .filter(published__year__gt=r.randint(1900, 2020)))

    def op_values():
        fields = r.sample(["id", "title", "isbn", "price", "published", "author__name", "publisher__country"], r.randint(1, 4))
        if r.random() < 0.5:
            list(Book.objects.filter(price__lte=v.price()).values(*fields).order_by(*r.sample(fields, 1)))
        else:
            list(Book.objects.filter(title__icontains=v.word()).values_list(fields[0], flat=True).distinct())

    def op_order_slice():
        order = r.sample(["id", "-id", "title", "-price", "published", "-published", "author__name", "?"], r.randint(1, 3))
        if "?" in order:
            order = ["?"]
        start = r.choice([0, 0, 10, 20, 40, 100, r.randint(0, 200)])
        size = r.choice([1, 10, 20, 25, 50, r.randint(1, 100)])
        list(Book.objects.order_by(*order)[start:start + size])

    def op_distinct():
        list(Book.objects.filter(reviews__rating__gte=r.randint(1, 5)).distinct())
        if r.random() < 0.5:
            list(Review.objects.order_by("book_id", "-created_at").distinct("book_id")[:r.randint(1, 20)])

    def op_related():
        kind = r.randint(0, 6)
        if kind == 0:
            for b in Book.objects.select_related("author", "publisher").filter(price__lt=v.price())[:r.randint(1, 15)]:
                b.author.name
        elif kind == 1:
            for b in Book.objects.prefetch_related("tags").filter(pk__in=v.ids(130, r.randint(1, 12))):
                list(b.tags.all())
        elif kind == 2:
            for a in Author.objects.prefetch_related("book_set").filter(name__istartswith=v.word()[:2])[:r.randint(1, 10)]:
                list(a.book_set.all())
        elif kind == 3:
            qs = Review.objects.filter(status=r.choice(STATUSES), rating__gte=r.randint(1, 5))
            for p in Publisher.objects.prefetch_related(Prefetch("books__reviews", queryset=qs))[:r.randint(1, 8)]:
                for b in p.books.all():
                    list(b.reviews.all())
        elif kind == 4:
            # The N+1 shape: one query per book for its author.
            for b in Book.objects.filter(publisher_id=r.randint(1, 8))[:r.randint(1, 8)]:
                b.author.email
        elif kind == 5:
            for o in Order.objects.prefetch_related("lines__book").filter(status=r.choice(ORDER_STATUSES))[:r.randint(1, 5)]:
                for line in o.lines.all():
                    line.book.title
        else:
            try:
                a = Author.objects.get(pk=r.randint(1, 32))
                list(a.book_set.filter(price__gt=v.price()))
                a.book_set.count()
            except Author.DoesNotExist:
                pass

    def op_only_defer():
        if r.random() < 0.5:
            list(Book.objects.only(*r.sample(["title", "price", "isbn", "published"], r.randint(1, 3))).filter(pk__gt=r.randint(0, 120)))
        else:
            list(Author.objects.defer("bio").filter(email__iendswith=r.choice(DOMAINS)))

    def op_count_exists():
        r.choice([
            lambda: Book.objects.filter(title__icontains=v.word()).count(),
            lambda: Review.objects.filter(rating=r.randint(1, 5), status=r.choice(STATUSES)).exists(),
            lambda: Order.objects.filter(customer_email__iexact=v.email()).exists(),
            lambda: Tag.objects.filter(name__startswith="tag-%d" % r.randint(0, 30)).count(),
        ])()

    def op_create():
        kind = r.randint(0, 3)
        if kind == 0:
            Review.objects.create(book_id=r.randint(1, 119), rating=r.randint(1, 5), status=r.choice(STATUSES),
                                  body=v.text((0, 10)), created_at=v.datetime())
        elif kind == 1:
            with transaction.atomic():
                o = Order.objects.create(customer_email=v.email(), created_at=v.datetime(), status="new")
                for _ in range(r.randint(1, 4)):
                    OrderLine.objects.create(order=o, book_id=r.randint(1, 119), quantity=r.randint(1, 9),
                                             unit_price=v.price())
        elif kind == 2:
            Author.objects.create(name=v.text((1, 2)), email=v.email(), bio=v.text((0, 12)),
                                  born=r.choice([None, v.date()]))
        else:
            try:
                with transaction.atomic():
                    Book.objects.create(title=v.text(), isbn=v.isbn(), price=v.price(), published=v.date(),
                                        author_id=r.randint(1, 35), publisher_id=r.randint(1, 9))
            except IntegrityError:
                pass

    def op_update():
        kind = r.randint(0, 3)
        if kind == 0:
            Review.objects.filter(pk__in=v.ids(600, r.randint(1, 10))).update(status=r.choice(STATUSES))
        elif kind == 1:
            Order.objects.filter(created_at__lt=v.datetime(), status="new").update(status=r.choice(ORDER_STATUSES))
        elif kind == 2:
            b = Book.objects.filter(pk=book_id()).first()
            if b:
                b.price = v.price()
                b.title = v.text()
                b.save(update_fields=r.choice([["price"], ["price", "title"], None]) or None)
        else:
            Author.objects.filter(pk=r.randint(1, 40)).update(bio=Concat(F("bio"), Value(v.text((1, 2)))))

    def op_delete():
        kind = r.randint(0, 2)
        if kind == 0:
            Review.objects.filter(rating=r.randint(1, 5), created_at__lt=v.datetime() - dt.timedelta(days=3000)).delete()
        elif kind == 1:
            OrderLine.objects.filter(pk__in=v.ids(300, r.randint(1, 5))).delete()
        else:
            o = Order.objects.filter(pk=r.randint(1, 200)).first()
            if o:
                o.delete()

    def op_bulk():
        kind = r.randint(0, 3)
        n = r.choice([1, 2, 3, 5, 8, 13, 21, r.randint(1, 60)])
        if kind == 0:
            Review.objects.bulk_create([Review(book_id=r.randint(1, 119), rating=r.randint(1, 5), status=r.choice(STATUSES),
                                               body=v.text((0, 4)), created_at=v.datetime()) for _ in range(n)])
        elif kind == 1:
            Tag.objects.bulk_create([Tag(name=f"t{r.randint(0, 400)}-{v.word()}") for _ in range(n)], ignore_conflicts=True)
        elif kind == 2:
            Book.objects.bulk_create(
                [Book(title=v.text(), isbn=f"978-00000{r.randint(0, 300):05d}", price=v.price(), published=v.date(),
                      author_id=r.randint(1, 30), publisher_id=r.randint(1, 8)) for _ in range(min(n, 10))],
                update_conflicts=True, unique_fields=["isbn"], update_fields=["title", "price"])
        else:
            books = list(Book.objects.filter(pk__in=v.ids(130, n)))
            for b in books:
                b.price = v.price()
                if r.random() < 0.5:
                    b.published = r.choice([None, v.date()])
            if books:
                Book.objects.bulk_update(books, r.choice([["price"], ["price", "published"]]), batch_size=r.choice([None, 3, 10]))

    def op_get_or_create():
        try:
            if r.random() < 0.5:
                Tag.objects.get_or_create(name=f"g-{r.randint(0, 300)}-{v.word()}")
            else:
                Publisher.objects.update_or_create(name=f"P{r.randint(0, 40)}", defaults={"country": r.choice(COUNTRIES)})
        except IntegrityError:
            pass

    def op_nested_atomic():
        with transaction.atomic():
            Order.objects.filter(pk=r.randint(1, 100)).update(status=r.choice(ORDER_STATUSES))
            try:
                with transaction.atomic():
                    Tag.objects.create(name=f"tag-{r.randint(0, 20)}-{v.word()}")
            except IntegrityError:
                pass
            if r.random() < 0.3:
                sid = transaction.savepoint()
                Review.objects.filter(pk=r.randint(1, 500)).delete()
                transaction.savepoint_rollback(sid) if r.random() < 0.5 else transaction.savepoint_commit(sid)

    def op_for_update():
        with transaction.atomic():
            kw = r.choice([{}, {"nowait": True}, {"skip_locked": True}, {"of": ("self",)}, {"no_key": True}])
            qs = Book.objects.select_for_update(**kw).filter(pk__in=v.ids(130, r.randint(1, 5)))
            if kw.get("of"):
                qs = Book.objects.select_related("author").select_for_update(of=("self",)).filter(pk=book_id())
            for b in qs:
                b.price = v.price()
                b.save(update_fields=["price"])

    def op_raw():
        kind = r.randint(0, 3)
        if kind == 0:
            list(Book.objects.raw("SELECT * FROM shop_book WHERE price > %s AND title ILIKE %s ORDER BY id LIMIT %s",
                                  [v.price(), "%" + v.word() + "%", r.randint(1, 50)]))
        elif kind == 1:
            list(Author.objects.raw("SELECT id, name FROM shop_author WHERE born BETWEEN %s AND %s", sorted([v.date(), v.date()])))
        elif kind == 2:
            with connection.cursor() as c:
                c.execute("SELECT count(*) FROM shop_review WHERE created_at >= %s AND rating = ANY(%s)",
                          [v.datetime(), r.sample(range(1, 6), r.randint(1, 5))])
                c.fetchall()
        else:
            with connection.cursor() as c:
                c.execute("SELECT %s::jsonb -> 'a', %s::numeric * 2, %s::boolean IS TRUE, %s::text IS NULL",
                          [json_text(), v.price() * r.choice([-1, 1]), r.choice([True, False]), r.choice([None, v.word()])])
                c.fetchall()

    def json_text():
        import json
        doc = {"a": r.choice([1, -2.5, "x'y", None, True, [1, 2, 3], {"nested": "😀"}]), "b": v.word()}
        return json.dumps(doc, ensure_ascii=r.choice([True, False]))

    def op_union():
        a = Book.objects.filter(price__lt=v.price()).values_list("id", "title")
        b = Book.objects.filter(title__istartswith=v.word()[:3]).values_list("id", "title")
        qs = a.union(b, all=r.choice([True, False]))
        if r.random() < 0.5:
            qs = qs.order_by("id")
        list(qs[:r.randint(1, 40)])

    def op_functions():
        kind = r.randint(0, 7)
        if kind == 0:
            list(Book.objects.annotate(p=Cast("price", IntegerField())).filter(p__gte=r.randint(0, 900)).values("id", "p"))
        elif kind == 1:
            list(Author.objects.annotate(b=Coalesce("born", Value(v.date()))).filter(b__lt=v.date()))
        elif kind == 2:
            list(Author.objects.annotate(ln=Lower("name")).filter(ln__contains=v.word().lower()))
        elif kind == 3:
            list(Book.objects.annotate(label=Concat("title", Value(" — "), "isbn", Value(v.word()), output_field=CharField()))
                 .values_list("label", flat=True)[:r.randint(1, 20)])
        elif kind == 4:
            list(Review.objects.annotate(m=TruncMonth("created_at")).values("m").annotate(n=Count("id"), avg=Avg("rating"))
                 .filter(m__gte=v.datetime()).order_by("m"))
        elif kind == 5:
            list(Book.objects.annotate(meta=Value({"k": v.word(), "n": v.signed()}, output_field=JSONField()))
                 .filter(pk=book_id()).values("id", "meta"))
        elif kind == 6:
            list(Book.objects.annotate(
                band=Case(When(price__lt=v.price(), then=Value("cheap")), When(price__lt=v.price(), then=Value("mid")),
                          default=Value(v.word()), output_field=CharField())).values("band").annotate(n=Count("id")))
        else:
            list(Author.objects.annotate(up=Upper(Substr("name", r.randint(1, 4), r.randint(1, 10))),
                                         pos=StrIndex("email", Value("@")), l=Length("bio"),
                                         cleaned=Replace("name", Value(v.word()), Value(v.word())))
                 .filter(l__gt=r.randint(0, 100)))

    def op_trunc():
        r.choice([
            lambda: list(Order.objects.annotate(d=TruncDate("created_at")).filter(d=v.date()).values("d").annotate(n=Count("id"))),
            lambda: list(Book.objects.annotate(y=TruncYear("published")).values("y").annotate(n=Count("id")).filter(n__gt=r.randint(0, 3))),
            lambda: list(Book.objects.annotate(y=ExtractYear("published")).filter(y__in=[r.randint(1900, 2025) for _ in range(r.randint(1, 6))])),
            lambda: list(Review.objects.dates("created_at", r.choice(["year", "month", "day"]))),
            lambda: list(Order.objects.filter(status=r.choice(ORDER_STATUSES)).datetimes("created_at", r.choice(["month", "hour"]))),
            lambda: list(Review.objects.filter(created_at__lt=Now()).annotate(g=Greatest("rating", Value(r.randint(1, 5))))[:r.randint(1, 10)]),
        ])()

    def op_m2m():
        b = Book.objects.filter(pk=book_id()).first()
        if not b:
            return
        tag_ids = [r.randint(1, 30) for _ in range(r.randint(1, 5))]
        try:
            with transaction.atomic():
                r.choice([lambda: b.tags.add(*tag_ids), lambda: b.tags.remove(*tag_ids),
                          lambda: b.tags.set(tag_ids), lambda: b.tags.clear()])()
        except IntegrityError:
            pass
        list(b.tags.filter(name__icontains=v.word()))

    def op_misc():
        r.choice([
            lambda: Book.objects.in_bulk(v.ids(130, r.randint(1, 9))),
            lambda: Review.objects.filter(book_id=book_id()).latest("created_at"),
            lambda: Book.objects.filter(published__isnull=False, price__gte=v.price()).earliest("published"),
            lambda: Book.objects.filter(price__gte=v.price()).order_by("price").first(),
            lambda: Book.objects.filter(title__icontains=v.word()).last(),
            lambda: list(Book.objects.filter(price__gt=v.price()).iterator(chunk_size=r.choice([2, 10, 100, 2000]))),
            lambda: list(Review.objects.select_related("book__author").filter(book__author__email__icontains=v.word(), rating__gte=r.randint(1, 5))),
            lambda: list(Book.objects.exclude(reviews__status=r.choice(STATUSES)).filter(Q(price__gte=v.price()) | Q(published=None))),
            lambda: list(Publisher.objects.filter(books__author__born__year__lt=r.randint(1900, 2020)).distinct().order_by("name")),
            lambda: list(OrderLine.objects.filter(quantity__gte=r.randint(1, 9), order__created_at__date__gte=v.date()).select_related("order", "book")),
        ])()

    return [
        (4, op_get), (6, op_text_lookup), (5, op_cmp), (2, op_range), (5, op_in), (1, op_isnull),
        (3, op_dates), (2, op_regex), (4, op_q), (3, op_f), (4, op_annotate), (2, op_aggregate),
        (3, op_subquery), (2, op_window), (3, op_values), (3, op_order_slice), (1, op_distinct),
        (4, op_related), (2, op_only_defer), (3, op_count_exists), (4, op_create), (3, op_update),
        (2, op_delete), (3, op_bulk), (2, op_get_or_create), (2, op_nested_atomic), (2, op_for_update),
        (3, op_raw), (2, op_union), (4, op_functions), (2, op_trunc), (3, op_m2m), (4, op_misc),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(gen_common.HERE, "django.jsonl"))
    ap.add_argument("--ops", type=int, default=3000, help="number of randomized ORM operations")
    ap.add_argument("--seed", type=int, default=20240301)
    args = ap.parse_args()

    corpus = gen_common.Corpus()
    cluster = gen_common.Cluster()
    tap = None
    try:
        cluster.recreate_db(DB_NAME)
        tap = gen_common.WireTap(cluster, corpus.add)
        setup_django(tap.port)
        from django.core.exceptions import ObjectDoesNotExist
        from django.core.management import call_command
        from django.db import connection
        from shop import models as m

        call_command("migrate", verbosity=0, interactive=False)
        gen_common.log(f"after migrate: {len(corpus)} statements")
        rng = random.Random(args.seed)
        v = Values(rng)
        load_data(v, m)
        gen_common.log(f"after data load: {len(corpus)} statements")
        ops = make_ops(v, m)
        weights = [w for w, _ in ops]
        funcs = [f for _, f in ops]
        for _ in range(args.ops):
            try:
                rng.choices(funcs, weights)[0]()
            except ObjectDoesNotExist:
                pass
        connection.close()
        gen_common.log(f"after {args.ops} ORM operations: {len(corpus)} statements")
    finally:
        if tap:
            tap.close()
        try:
            cluster.drop_db(DB_NAME)
        except Exception as e:  # the cluster may be gone already; the corpus is what matters
            gen_common.log(f"could not drop {DB_NAME}: {e}")
        cluster.close()
    corpus.write(args.out)


if __name__ == "__main__":
    main()
