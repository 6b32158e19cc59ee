"""The wishlist table, created with raw SQL the way legacy tables often are: its
foreign key to shop_book has no index (PostgreSQL never creates one for a FOREIGN
KEY; Django does, but only for tables it creates).  The model (shop.Wishlist) is
unmanaged and only maps the table."""
from django.db import migrations, models
import django.db.models.deletion


class Migration(migrations.Migration):

    dependencies = [
        ("shop", "0001_initial"),
    ]

    operations = [
        migrations.RunSQL(
            sql="""
                CREATE TABLE shop_wishlist (
                    id serial PRIMARY KEY,
                    book_id bigint NOT NULL REFERENCES shop_book (id) DEFERRABLE INITIALLY DEFERRED,
                    customer_email text NOT NULL
                )
            """,
            reverse_sql="DROP TABLE shop_wishlist",
        ),
        migrations.CreateModel(
            name="Wishlist",
            fields=[
                ("id", models.AutoField(primary_key=True, serialize=False)),
                ("customer_email", models.TextField()),
                ("book", models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.DO_NOTHING,
                                           related_name="wishlists", to="shop.book")),
            ],
            options={
                "db_table": "shop_wishlist",
                "managed": False,
            },
        ),
    ]
