"""Models of the bookstore demo: a small catalogue with reviews and orders."""
from django.db import models


class Author(models.Model):
    name = models.CharField(max_length=200)
    email = models.EmailField(blank=True)
    bio = models.TextField(blank=True)
    born = models.DateField(null=True, blank=True)

    def __str__(self):
        return self.name


class Publisher(models.Model):
    name = models.CharField(max_length=200)
    country = models.CharField(max_length=100, blank=True)

    def __str__(self):
        return self.name


class Tag(models.Model):
    name = models.CharField(max_length=50, unique=True)

    def __str__(self):
        return self.name


class Book(models.Model):
    title = models.CharField(max_length=300)
    isbn = models.CharField(max_length=17, unique=True)
    price = models.DecimalField(max_digits=8, decimal_places=2)
    published = models.DateField(null=True, blank=True)
    author = models.ForeignKey(Author, on_delete=models.CASCADE)
    publisher = models.ForeignKey(Publisher, on_delete=models.CASCADE, related_name="books")
    tags = models.ManyToManyField(Tag, blank=True)

    def __str__(self):
        return self.title


class Review(models.Model):
    # Planted problem: the "recent published reviews" page filters on status and
    # created_at, which have no index (hundreds of thousands of rows: a Seq Scan).
    # pgmedic's fix, proven with a hypothetical index, is
    #     class Meta:
    #         indexes = [models.Index(fields=["status", "created_at"])]
    # `make demo` creates that index by hand (CREATE INDEX CONCURRENTLY) instead, so the
    # same code can be measured before and after.
    STATUS_CHOICES = [("pending", "Pending"), ("published", "Published"), ("hidden", "Hidden")]

    book = models.ForeignKey(Book, on_delete=models.CASCADE, related_name="reviews")
    rating = models.IntegerField()
    status = models.CharField(max_length=20, choices=STATUS_CHOICES, default="pending")
    body = models.TextField(blank=True)
    created_at = models.DateTimeField()

    def __str__(self):
        return f"{self.book_id}: {self.rating}"


class Order(models.Model):
    STATUS_CHOICES = [("new", "New"), ("paid", "Paid"), ("shipped", "Shipped"), ("cancelled", "Cancelled")]

    customer_email = models.EmailField()
    created_at = models.DateTimeField()
    status = models.CharField(max_length=20, choices=STATUS_CHOICES, default="new")

    def __str__(self):
        return f"order {self.pk}"


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    book = models.ForeignKey(Book, on_delete=models.CASCADE)
    quantity = models.PositiveIntegerField(default=1)
    unit_price = models.DecimalField(max_digits=8, decimal_places=2)

    def __str__(self):
        return f"{self.order_id}/{self.book_id} x{self.quantity}"


class Wishlist(models.Model):
    """A table created by a hand-written migration (0002_wishlist, migrations.RunSQL),
    as legacy tables often are: its foreign key to shop_book has no index (planted
    problem: every delete of a book, and every "who wants this book" lookup, scans it).
    Mapped unmanaged; db_index=False says what the table really has."""

    id = models.AutoField(primary_key=True)  # serial
    book = models.ForeignKey(Book, on_delete=models.DO_NOTHING, db_index=False, related_name="wishlists")
    customer_email = models.TextField()

    class Meta:
        managed = False
        db_table = "shop_wishlist"

    def __str__(self):
        return f"{self.customer_email} wants {self.book_id}"
