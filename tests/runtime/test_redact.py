"""Secrets are masked in URLs and free text before they reach logs or errors."""

from __future__ import annotations

import pytest

from runtime.redact import redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://bob:s3cret@ch.example:8123/db", "http://bob:***@ch.example:8123/db"),
        ("https://ch.example:8443/db", "https://ch.example:8443/db"),
        ("rtsp://cam:pa%40ss@10.0.0.5/live", "rtsp://cam:***@10.0.0.5/live"),
        ("http://h/x?token=abc&x=1", "http://h/x?token=***&x=1"),
        ("chdb:///var/lib/ch", "chdb:///var/lib/ch"),
        (
            "srt://10.0.0.9:9000?mode=caller&passphrase=s3cr3tpass",
            "srt://10.0.0.9:9000?mode=caller&passphrase=***",
        ),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_text_masks_every_kind_of_secret() -> None:
    text = (
        "failed http://u:pw1@h:1 with Authorization: Bearer abc.def-ghi "
        "api_key=ih_123 and literal hunter2"
    )
    assert redact_text(text, ("hunter2",)) == (
        "failed http://u:***@h:1 with Authorization: Bearer *** api_key=*** and literal ***"
    )
