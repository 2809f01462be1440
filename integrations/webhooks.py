"""The push path: Golioth Pipelines POST readings here (placeholder until the push issue lands)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt
def golioth_webhook(request: HttpRequest, token: str) -> HttpResponse:
    return HttpResponse(status=501)
