"""Views of the bookstore demo.

Each planted performance problem has a fixed twin under /fixed/ doing the same work the
right way, so `make demo` (and tests/integration/test_bookstore.py) can show what pgmedic
finds and measure the difference:

  planted                         problem                              fixed twin
  /books/                         N+1 over a forward FK (book.author)  select_related("author")
  /books/reviews/                 N+1 over a reverse FK (book.reviews) prefetch_related("reviews")
  /books/tags/                    N+1 over a many-to-many (book.tags)  prefetch_related("tags")
  /publishers/<pk>/               the same publisher loaded 5 times    loaded once
  /reviews/recent/                filter on unindexed columns          same code, after the index
  /books/<pk>/wishlists/          unindexed foreign key (raw SQL table) same code, after the index

The index problems cannot be fixed at run time by the code, so their twins run the same
code: the demo creates the index pgmedic suggests, then requests the twin.
Views without any problem: /books/<pk>/ (detail with select_related) and /health/.
"""
from datetime import timedelta

from django.db import connection
from django.http import JsonResponse
from django.utils import timezone

from .models import Book, Publisher, Review, Wishlist

BOOKS_WITH_AUTHORS = 50
BOOKS_WITH_REVIEWS = 30
BOOKS_WITH_TAGS = 40
RECENT_DAYS = 14
RECENT_LIMIT = 20


# ---------------------------------------------------------------- forward FK

def _books_with_authors(books):
    return JsonResponse({"books": [{"id": b.id, "title": b.title, "author": b.author.name} for b in books]})


def book_list(request):
    """N+1: one query for the books, then one per book for its author."""
    return _books_with_authors(Book.objects.order_by("id")[:BOOKS_WITH_AUTHORS])


def book_list_fixed(request):
    return _books_with_authors(Book.objects.select_related("author").order_by("id")[:BOOKS_WITH_AUTHORS])


# ---------------------------------------------------------------- reverse FK

def _books_with_review_counts(books):
    return JsonResponse({"books": [{"id": b.id, "title": b.title, "reviews": len(b.reviews.all())}
                                   for b in books]})


def book_reviews(request):
    """N+1: one query for the books, then one per book for its reviews."""
    return _books_with_review_counts(Book.objects.order_by("id")[:BOOKS_WITH_REVIEWS])


def book_reviews_fixed(request):
    return _books_with_review_counts(
        Book.objects.prefetch_related("reviews").order_by("id")[:BOOKS_WITH_REVIEWS])


# ---------------------------------------------------------------- many-to-many

def _books_with_tags(books):
    return JsonResponse({"books": [{"id": b.id, "title": b.title, "tags": sorted(t.name for t in b.tags.all())}
                                   for b in books]})


def book_tags(request):
    """N+1: one query for the books, then one per book for its tags."""
    return _books_with_tags(Book.objects.order_by("id")[:BOOKS_WITH_TAGS])


def book_tags_fixed(request):
    return _books_with_tags(Book.objects.prefetch_related("tags").order_by("id")[:BOOKS_WITH_TAGS])


# ---------------------------------------------------------------- duplicate queries

def _publisher(pk):
    return Publisher.objects.get(pk=pk)


def publisher_detail(request, pk):
    """Duplicates: each helper call loads the same publisher again (5 identical queries)."""
    return JsonResponse({
        "id": _publisher(pk).id,
        "name": _publisher(pk).name,
        "country": _publisher(pk).country,
        "label": str(_publisher(pk)),
        "books": _publisher(pk).books.count(),
    })


def publisher_detail_fixed(request, pk):
    p = _publisher(pk)
    return JsonResponse({"id": p.id, "name": p.name, "country": p.country, "label": str(p),
                         "books": p.books.count()})


# ---------------------------------------------------------------- missing index

def recent_reviews(request):
    """Recent published reviews: filters on status and created_at, which have no index
    until pgmedic's suggestion is applied.  /fixed/reviews/recent/ is the same code."""
    since = timezone.now() - timedelta(days=RECENT_DAYS)
    reviews = (Review.objects.filter(status="published", created_at__gte=since)
               .order_by("-created_at")[:RECENT_LIMIT])
    return JsonResponse({"reviews": [{"id": r.id, "book": r.book_id, "rating": r.rating,
                                      "created_at": r.created_at.isoformat()} for r in reviews]})


# ---------------------------------------------------------------- unindexed foreign key

def book_wishlists(request, pk):
    """Who wishes for this book: filters shop_wishlist on book_id, a foreign key with no
    index.  /fixed/books/<pk>/wishlists/ is the same code."""
    emails = list(Wishlist.objects.filter(book_id=pk).order_by().values_list("customer_email", flat=True))
    return JsonResponse({"book": pk, "wishlists": len(emails), "customers": emails[:10]})


# ---------------------------------------------------------------- no problem here

def book_detail(request, pk):
    try:
        b = Book.objects.select_related("author", "publisher").get(pk=pk)
    except Book.DoesNotExist:
        return JsonResponse({"error": "no such book"}, status=404)
    return JsonResponse({"id": b.id, "title": b.title, "isbn": b.isbn, "price": str(b.price),
                         "author": b.author.name, "publisher": b.publisher.name,
                         "tags": sorted(t.name for t in b.tags.all())})


def health(request):
    with connection.cursor() as cur:
        cur.execute("SELECT 1")
        ok = cur.fetchone()[0] == 1
    return JsonResponse({"ok": ok})


def index(request):
    """The list of pages (no query)."""
    from .urls import PAGES
    return JsonResponse({"pages": PAGES})
