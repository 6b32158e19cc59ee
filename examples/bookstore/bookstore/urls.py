"""URL routes of the bookstore demo: everything is in shop/urls.py (no URL prefix, so
the route patterns pgmedic reports are /books/, /fixed/books/, ...)."""
from django.urls import include, path

urlpatterns = [
    path("", include("shop.urls")),
]
