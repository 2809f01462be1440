"""The production URLs plus `/bench/bare/`: a Django view that reads the body and does one INSERT.

It is the yardstick of bench_webhook.py (same server, same middleware, same database) and exists
only in this bench URLconf, never in gsync.urls.
"""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

BARE_TABLE = "bench_bare_insert"


@csrf_exempt
def bare_insert(request: HttpRequest) -> JsonResponse:
    body = request.read()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {BARE_TABLE} (received_at, body) VALUES (now(), %s)", [body.decode()]
        )
    return JsonResponse({"stored": 1})


urlpatterns = [
    path("bench/bare/", bare_insert),
    path("", include("gsync.urls")),
]
