from django.apps import AppConfig


class PgmedicConfig(AppConfig):
    name = "pgmedic_django"
    verbose_name = "pgmedic"
