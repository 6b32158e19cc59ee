"""A small bookshop: foreign keys (PROTECT and CASCADE), a many-to-many through an
explicit model with extra data, an auto-created many-to-many, JSON, decimals,
timestamps and database constraints for the tests to trip over."""
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Tag(models.Model):
    name = models.CharField(max_length=50, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class Author(models.Model):
    name = models.CharField(max_length=200, unique=True)
    born = models.DateField(null=True, blank=True)
    # Auto-created join table (shop_author_favourite_tags).
    favourite_tags = models.ManyToManyField(Tag, related_name="fans", blank=True)

    def __str__(self):
        return self.name


class Book(models.Model):
    # PROTECT: an author with books cannot be deleted.
    author = models.ForeignKey(Author, on_delete=models.PROTECT, related_name="books")
    title = models.CharField(max_length=300)
    isbn = models.CharField(max_length=13, unique=True)
    price = models.DecimalField(max_digits=8, decimal_places=2)
    stock = models.IntegerField(default=0)
    published_at = models.DateTimeField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    tags = models.ManyToManyField(Tag, through="Tagging", related_name="books", blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(check=Q(stock__gte=0), name="shop_book_stock_nonnegative"),
        ]

    def __str__(self):
        return self.title


class Tagging(models.Model):
    """Explicit through model of Book.tags, with a weight per (book, tag)."""

    book = models.ForeignKey(Book, on_delete=models.CASCADE, related_name="taggings")
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="taggings")
    weight = models.PositiveSmallIntegerField(default=1)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["book", "tag"], name="shop_tagging_book_tag_unique"),
        ]


class Review(models.Model):
    book = models.ForeignKey(Book, on_delete=models.CASCADE, related_name="reviews")
    rating = models.PositiveSmallIntegerField()
    text = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(check=Q(rating__gte=1) & Q(rating__lte=5), name="shop_review_rating_1_5"),
        ]
