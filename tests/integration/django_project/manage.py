#!/usr/bin/env python3
"""Django's command-line utility for the pgmedic test project.

Run with Debian's /usr/bin/python3 (Django 4.2 + psycopg2); the database comes from
the PGMEDIC_TEST_* environment variables (see testsite/settings.py).
"""
import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testsite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
