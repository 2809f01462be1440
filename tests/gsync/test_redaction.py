"""gsync.redaction: the webhook token and query values never reach a log line, however the path
was written (the servers decode %2F and %XX before routing, the logs keep the raw line)."""

from urllib.parse import quote

import pytest

from gsync.redaction import is_secret_name, redact

TOKEN = "tok3n-AbCdEf0123456789"


@pytest.mark.parametrize(
    "path",
    [
        f"/webhooks/golioth/{TOKEN}/",
        f"/webhooks%2Fgolioth%2F{TOKEN}/",
        f"/webhooks%2fgolioth/{TOKEN}/",
        f"/webhooks/golioth%2F{TOKEN}%2F",
        f"/webhooks/golioth/{quote(TOKEN, safe='')}/",
        "/webhooks/golioth/" + "".join(f"%{ord(c):02X}" for c in TOKEN) + "/",
        f"/%77ebhooks/golioth/{TOKEN}/",
    ],
)
def test_the_token_is_redacted_however_the_path_is_encoded(path):
    line = f'127.0.0.1 - - "POST {path} HTTP/1.1" 401 58'
    redacted = redact(line)
    assert TOKEN not in redacted
    assert "".join(f"%{ord(c):02X}" for c in TOKEN) not in redacted
    assert "[redacted]" in redacted


def test_query_values_are_redacted_and_names_kept():
    assert redact("GET /admin/?q=s3cret&x") == "GET /admin/?q=[redacted]&[redacted]"


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("Authorization", True),
        ("X-Gsync-Secret", True),
        ("X-Api-Key", True),
        ("Cookie", True),
        ("Proxy-Authorization", True),
        ("X-Db-Password", True),
        ("Ce-Source", False),
        ("Content-Type", False),
    ],
)
def test_one_rule_says_which_header_names_are_secret(name, secret):
    """The webhook's stored headers, the admin's display and gunicorn's header atoms all ask it."""
    assert is_secret_name(name) is secret
