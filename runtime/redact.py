"""Removing secrets from text that may reach a log line or an error message."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ["redact_text", "redact_url"]

_USERINFO = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]*)@"
)
_SECRET_QUERY = re.compile(
    r"(?P<key>(?:password|passwd|pwd|passphrase|secret|token|api[_-]?key|access[_-]?token|key)=)[^&\s]+",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?P<key>Bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)

MASK = "***"


def redact_url(url: str) -> str:
    """Return ``url`` with any password and secret-looking query values masked.

    ``http://user:pw@host:8123/db`` becomes ``http://user:***@host:8123/db``.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    netloc = parts.netloc
    if parts.password is not None:
        host = netloc.rsplit("@", 1)[1]
        netloc = f"{parts.username or ''}:{MASK}@{host}"
    query = _SECRET_QUERY.sub(lambda m: m.group("key") + MASK, parts.query)
    if netloc == parts.netloc and query == parts.query:
        return url  # nothing secret; urlunsplit would also drop an empty authority
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Mask URL passwords, bearer tokens, ``key=value`` secrets and any literal ``secrets``."""
    out = _USERINFO.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{MASK}@", text)
    out = _SECRET_QUERY.sub(lambda m: m.group("key") + MASK, out)
    out = _BEARER.sub(lambda m: m.group("key") + MASK, out)
    for secret in secrets:
        if secret:
            out = out.replace(secret, MASK)
    return out
