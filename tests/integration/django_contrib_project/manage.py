#!/usr/bin/env python3
"""manage.py of the pgmedic_django test project (tests/integration/test_django_contrib.py)."""
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "contribsite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
