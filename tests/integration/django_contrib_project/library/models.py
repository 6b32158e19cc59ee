"""A small library: a foreign key with a related_name (Book.author -> books), one
without (Book.publisher -> book_set), a one-to-one (AuthorProfile.author ->
authorprofile), an auto-created many-to-many (Book.tags, table library_book_tags),
a proxy model (left out of the model map) and an unmanaged one (managed: false)."""
from django.db import models


class Publisher(models.Model):
    name = models.CharField(max_length=100)


class Author(models.Model):
    name = models.CharField(max_length=100, unique=True)


class AuthorProfile(models.Model):
    author = models.OneToOneField(Author, on_delete=models.CASCADE)
    bio = models.TextField(blank=True)


class Tag(models.Model):
    name = models.CharField(max_length=50, unique=True)


class Book(models.Model):
    title = models.CharField(max_length=200)
    author = models.ForeignKey(Author, on_delete=models.CASCADE, related_name="books")
    publisher = models.ForeignKey(Publisher, on_delete=models.SET_NULL, null=True, blank=True)
    tags = models.ManyToManyField(Tag, related_name="books", blank=True)


class CheapBook(Book):
    class Meta:
        proxy = True


class LegacyStock(models.Model):
    book = models.ForeignKey(Book, on_delete=models.DO_NOTHING, db_column="book_ref")
    quantity = models.IntegerField()

    class Meta:
        managed = False
        db_table = "legacy_stock"
