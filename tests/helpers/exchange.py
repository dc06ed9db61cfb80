"""One HTTP request on a fresh connection, as the serving tests make them."""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit


def exchange(url: str, method: str, path: str, body: bytes = b"", headers=None, timeout=60):
    """(status, headers, body) of one request to the server at `url` (http://host:port)."""
    target = urlsplit(url)
    connection = http.client.HTTPConnection(target.hostname, target.port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()
