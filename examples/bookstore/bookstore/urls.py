"""URL routes of the bookstore demo (views are added later)."""

urlpatterns = []
