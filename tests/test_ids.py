"""Recipient id rules."""

from __future__ import annotations

import pytest

from throttlemail import MAX_RECIPIENT_ID_LENGTH, InvalidRecipientError, normalize_recipient_id


@pytest.mark.parametrize(
    ("value", "expected"),
    [("abc", "abc"), (42, "42"), (-7, "-7"), ("user@example.com", "user@example.com"),
     ("ünï", "ünï"), ("x" * MAX_RECIPIENT_ID_LENGTH, "x" * MAX_RECIPIENT_ID_LENGTH)],
)
def test_valid_ids(value: object, expected: str) -> None:
    assert normalize_recipient_id(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "must not be empty"),
        (" a", "whitespace or a control character"),
        ("a b", "position 1"),
        ("a\tb", "whitespace"),
        ("a\nb", "whitespace"),
        ("a\x00b", "control character"),
        ("a\u200bb", "control character"),
        ("x" * (MAX_RECIPIENT_ID_LENGTH + 1), "the maximum is 256"),
        (None, "got NoneType"),
        (True, "got bool"),
        (1.0, "got float"),
        (b"abc", "got bytes"),
        (["a"], "got list"),
        ({"a": 1}, "got dict"),
    ],
)
def test_invalid_ids(value: object, message: str) -> None:
    with pytest.raises(InvalidRecipientError, match=message) as raised:
        normalize_recipient_id(value)

    assert raised.value.value == value
    assert isinstance(raised.value, ValueError)
