"""The API host allow-list and the private-address rule, in the client (issue 9, defect 1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from integrations.golioth.api_hosts import ApiHostError
from integrations.golioth.client import GoliothClient


def test_default_settings_refuse_the_simulator_host(settings, stub_server):
    settings.GSYNC_API_HOSTS = ["api.golioth.io"]
    settings.GSYNC_ALLOW_PRIVATE_API_HOSTS = False

    with pytest.raises(ApiHostError, match="host 127.0.0.1 is not an allowed Golioth API host"):
        GoliothClient(base_url=stub_server.url, api_key="secret-123", project_id="p")

    assert stub_server.received == []


@pytest.mark.parametrize(
    ("env", "hosts", "allow_private"),
    [
        ({}, ["api.golioth.io"], False),
        ({"GSYNC_DEMO": "1"}, ["api.golioth.io", "127.0.0.1"], True),
        (
            {"GSYNC_API_HOSTS": "api.golioth.io,*.example.com"},
            ["api.golioth.io", "*.example.com"],
            False,
        ),
    ],
)
def test_deployment_settings_allow_only_golioth_unless_told(env, hosts, allow_private):
    code = (
        "from django.conf import settings; import json; "
        "print(json.dumps([settings.GSYNC_API_HOSTS, settings.GSYNC_ALLOW_PRIVATE_API_HOSTS]))"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GSYNC_", "DJANGO_"))}
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, "DJANGO_SETTINGS_MODULE": "gsync.settings", "SECRET_KEY": "x", **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(result.stdout) == [hosts, allow_private]


@pytest.mark.parametrize(
    ("hosts", "url"),
    [
        (["127.0.0.1"], "http://127.0.0.1:{port}"),  # listed, but loopback
        (["localhost"], "http://localhost:{port}"),  # a name that resolves to loopback
        (["169.254.169.254"], "http://169.254.169.254"),  # cloud metadata
        (["10.0.0.7"], "http://10.0.0.7"),
        (["::ffff:127.0.0.1"], "http://[::ffff:127.0.0.1]:{port}"),
        (["64:ff9b::a9fe:a9fe"], "http://[64:ff9b::a9fe:a9fe]"),  # NAT64 of the metadata host
        (["::7f00:1"], "http://[::7f00:1]:{port}"),  # IPv4-compatible 127.0.0.1
        (["2002:a00:7::"], "http://[2002:a00:7::]"),  # 6to4 of 10.0.0.7
    ],
)
def test_private_addresses_are_refused_unless_allowed(settings, stub_server, hosts, url):
    settings.GSYNC_API_HOSTS = hosts
    settings.GSYNC_ALLOW_PRIVATE_API_HOSTS = False
    port = stub_server.url.rsplit(":", 1)[1]

    with pytest.raises(ApiHostError, match="loopback, private or link-local"):
        client = GoliothClient(base_url=url.format(port=port), api_key="k", project_id="p")
        client.get_project()

    assert stub_server.received == []


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://api.golioth.io", True),
        ("https://API.Golioth.io./", True),
        ("https://staging.golioth.dev", True),  # *.golioth.dev
        ("https://golioth.dev", False),
        ("https://api.golioth.io.evil.example", False),
        ("https://evilgolioth.io", False),
        ("https://user:pw@api.golioth.io", False),
        ("ftp://api.golioth.io", False),
    ],
)
def test_allow_list_matches_whole_host_names(url, allowed):
    from integrations.golioth.api_hosts import ApiHostPolicy

    policy = ApiHostPolicy(("api.golioth.io", "*.golioth.dev"), allow_private=False)
    if allowed:
        policy.check_url(url)
    else:
        with pytest.raises(ApiHostError):
            policy.check_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example\\@api.golioth.io/",  # urllib3 connects to evil.example
        "https://api.golioth.io\\.evil.example/",
        "https://api.golioth.io@evil.example/",
        "https://api.golioth.io\t.evil.example/",
        "https://api.golioth.io%2f@evil.example/",
    ],
)
def test_urls_that_parsers_read_differently_are_refused(settings, url):
    """requests (urllib3) and urllib.parse disagree on backslashes and userinfo: the host checked
    must be the host connected to, so anything they might read differently is refused."""
    settings.GSYNC_API_HOSTS = ["api.golioth.io"]

    with pytest.raises(ApiHostError):
        GoliothClient(base_url=url, api_key="secret-123", project_id="p")


def test_plain_http_is_refused_unless_private_hosts_are_allowed(monkeypatch):
    """Over http:// the x-api-key header travels in clear: only a local Golioth may use it."""
    import socket

    from integrations.golioth.api_hosts import ApiHostPolicy

    # This sandbox has no DNS: api.golioth.io resolves to a public address, as it does.
    public_answer = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("34.120.0.1", 443))]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: public_answer)

    public = ApiHostPolicy(("api.golioth.io",), allow_private=False)
    with pytest.raises(ApiHostError, match="must start with https://"):
        public.check_addresses("http://api.golioth.io")  # checked before every request
    with pytest.raises(ApiHostError, match="must start with https://"):
        ApiHostPolicy(("8.8.8.8",), allow_private=False).check_url("http://8.8.8.8")
    public.check_url("https://api.golioth.io")

    with pytest.raises(ApiHostError, match="private") as private:
        ApiHostPolicy(("127.0.0.1",), allow_private=False).check_url("http://127.0.0.1:9000")
    assert "https" not in str(private.value)  # the address is the reason, not the scheme

    ApiHostPolicy(("127.0.0.1",), allow_private=True).check_url("http://127.0.0.1:9000")
