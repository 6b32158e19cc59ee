from django.db import connection, connections
from django.http import JsonResponse
from django.shortcuts import get_object_or_404

from .models import Book


def book_list(request):
    # Deliberately N+1: one query for the books, one per book for its author.
    books = [{"id": b.id, "title": b.title, "author": b.author.name}
             for b in Book.objects.order_by("id")]
    return JsonResponse({"books": books})


def book_detail(request, pk):
    book = get_object_or_404(Book, pk=pk)
    return JsonResponse({
        "id": book.id,
        "title": book.title,
        "author": book.author.name,
        "tags": sorted(t.name for t in book.tags.all()),
    })


def search(request):
    q = request.GET.get("q", "")
    orm = sorted(Book.objects.filter(title__contains=q).values_list("title", flat=True))
    with connection.cursor() as cur:
        # A literal '%' in the SQL ('%%' in Django's format paramstyle) and a param.
        cur.execute("SELECT title FROM library_book WHERE title LIKE '%%' || %s || '%%' "
                    "ORDER BY title", [q])
        raw = [r[0] for r in cur.fetchall()]
    return JsonResponse({"orm": orm, "raw": raw})


def other_alias(request):
    return JsonResponse({"count": Book.objects.using("other").count(),
                         "vendor": connections["other"].vendor})


def percent_no_params(request):
    # No params: Django hands the SQL to psycopg2 verbatim, a single '%' is literal.
    with connection.cursor() as cur:
        cur.execute("SELECT '100%' AS pct")
        return JsonResponse({"pct": cur.fetchone()[0]})
