"""manage.py pgmedic_models [--url URL] [--print] [--timeout S]

POSTs the ORM's model map (pgmedic_django.modelmap, format in README.md) as JSON to
<url>/api/models.  Exits non-zero with a one-line reason if pgmedic cannot be reached
or answers anything but 2xx.
"""
import json
import urllib.error
import urllib.request

from django.core.management.base import BaseCommand, CommandError

from ... import conf
from ...modelmap import build_model_map


class Command(BaseCommand):
    help = "Send the ORM's model map (tables, columns, relations) to pgmedic's /api/models."
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--url", default=None,
                            help=f"pgmedic's HTTP address (default: settings.PGMEDIC_URL or {conf.DEFAULT_URL})")
        parser.add_argument("--print", action="store_true", dest="print_only",
                            help="only print the JSON, send nothing")
        parser.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")

    def handle(self, *args, url=None, print_only=False, timeout=10.0, **options):
        model_map = build_model_map()
        body = json.dumps(model_map, indent=2 if print_only else None, sort_keys=False)
        if print_only:
            self.stdout.write(body)
            return
        base = (url or conf.url()).rstrip("/")
        if "://" not in base:
            base = "http://" + base
        endpoint = base + "/api/models"
        req = urllib.request.Request(endpoint, data=body.encode("utf-8"), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status = resp.status
                answer = resp.read(65536).decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            # One line: an HTML error page would otherwise spread over the terminal.
            detail = " ".join(e.read(2000).decode("utf-8", "replace").split())[:300]
            raise CommandError(f"pgmedic at {endpoint} answered HTTP {e.code} {e.reason}"
                               + (f": {detail}" if detail else ""))
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise CommandError(f"could not reach pgmedic at {endpoint}: {reason} "
                               f"(is pgmedic running with --http? set --url or PGMEDIC_URL)")
        if not 200 <= status < 300:  # urlopen raises for most, not for e.g. 1xx oddities
            raise CommandError(f"pgmedic at {endpoint} answered HTTP {status}")
        stored = None
        try:
            stored = json.loads(answer).get("models")
        except (ValueError, AttributeError):
            pass
        n_models = len(model_map["models"])
        n_rel = sum(len(m["relations"]) for m in model_map["models"])
        summary = f"pgmedic_models: sent {n_models} models ({n_rel} relations) to {endpoint}"
        if stored is not None:
            summary += f"; pgmedic stored {stored}"
        self.stdout.write(summary)
