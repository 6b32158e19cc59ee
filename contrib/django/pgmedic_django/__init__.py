"""pgmedic_django: the Django side of pgmedic.

- `pgmedic_django.middleware.PgmedicMiddleware` appends a sqlcommenter comment
  (route, controller, app_name, framework, request_id) to every SQL statement a
  request runs, so that pgmedic can attribute each query to the view that issued it.
- `manage.py pgmedic_models` sends the ORM's model map (tables, columns, relations and
  their accessor names) to pgmedic, which uses it to phrase ORM fixes.

This module imports nothing from Django so that `pgmedic_django.sqlcommenter` can be
used (and tested) without configured settings.
"""

__version__ = "0.1.0"
