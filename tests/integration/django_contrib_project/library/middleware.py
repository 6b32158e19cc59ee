from django.db import connection


class EarlyQueryMiddleware:
    """Runs SELECT 1 before the view is resolved (as session/auth middleware would)
    when the request carries the header X-Early-Query."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "HTTP_X_EARLY_QUERY" in request.META:
            with connection.cursor() as cur:
                cur.execute("SELECT 1")
        return self.get_response(request)
