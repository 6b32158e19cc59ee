"""URLs of the shop.  Route patterns are what pgmedic reports (route tag), e.g. "/books/"."""
from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="index"),
    path("health/", views.health, name="health"),
    # planted problems
    path("books/", views.book_list, name="book_list"),
    path("books/reviews/", views.book_reviews, name="book_reviews"),
    path("books/tags/", views.book_tags, name="book_tags"),
    path("publishers/<int:pk>/", views.publisher_detail, name="publisher_detail"),
    path("reviews/recent/", views.recent_reviews, name="recent_reviews"),
    path("books/<int:pk>/wishlists/", views.book_wishlists, name="book_wishlists"),
    # their fixed twins
    path("fixed/books/", views.book_list_fixed, name="book_list_fixed"),
    path("fixed/books/reviews/", views.book_reviews_fixed, name="book_reviews_fixed"),
    path("fixed/books/tags/", views.book_tags_fixed, name="book_tags_fixed"),
    path("fixed/publishers/<int:pk>/", views.publisher_detail_fixed, name="publisher_detail_fixed"),
    path("fixed/reviews/recent/", views.recent_reviews, name="recent_reviews_fixed"),
    path("fixed/books/<int:pk>/wishlists/", views.book_wishlists, name="book_wishlists_fixed"),
    # no problem
    path("books/<int:pk>/", views.book_detail, name="book_detail"),
]

# (planted, fixed twin, problem) — used by the index view, `make demo` and the tests.
PAGES = [
    {"problem": "n_plus_one forward FK (book.author)", "planted": "/books/", "fixed": "/fixed/books/"},
    {"problem": "n_plus_one reverse FK (book.reviews)", "planted": "/books/reviews/",
     "fixed": "/fixed/books/reviews/"},
    {"problem": "n_plus_one many-to-many (book.tags)", "planted": "/books/tags/", "fixed": "/fixed/books/tags/"},
    {"problem": "duplicate_query (publisher loaded 5 times)", "planted": "/publishers/<int:pk>/",
     "fixed": "/fixed/publishers/<int:pk>/"},
    {"problem": "missing_index shop_review (status, created_at)", "planted": "/reviews/recent/",
     "fixed": "/fixed/reviews/recent/"},
    {"problem": "unindexed_foreign_key shop_wishlist (book_id)", "planted": "/books/<int:pk>/wishlists/",
     "fixed": "/fixed/books/<int:pk>/wishlists/"},
    {"problem": None, "planted": "/books/<int:pk>/", "fixed": None},
    {"problem": None, "planted": "/health/", "fixed": None},
]
