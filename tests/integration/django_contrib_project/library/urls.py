from django.urls import path

from . import views

app_name = "library"

urlpatterns = [
    path("books/", views.book_list, name="book-list"),
    path("books/<int:pk>/", views.book_detail, name="book-detail"),
    path("search/", views.search, name="search"),
    path("other/", views.other_alias, name="other-alias"),
    path("percent/", views.percent_no_params, name="percent"),
]
