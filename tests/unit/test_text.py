"""The one duration formatter and the one comma-list parser."""

from __future__ import annotations

import pytest

from cxr_covid.text import format_duration, split_list


@pytest.mark.parametrize(
    ("seconds", "exact", "rough"),
    [
        (4.25, "4.2s", "4 s"),
        (187, "3m07s", "3 min"),
        (7500, "2h05m", "2.1 h"),
        (-3, "0.0s", "0 s"),
    ],
)
def test_durations_read_exact_or_rough(seconds: float, exact: str, rough: str) -> None:
    assert format_duration(seconds) == exact
    assert format_duration(seconds, rough=True) == rough


def test_comma_lists_drop_blanks_and_spaces() -> None:
    assert split_list(" covid, Viral Pneumonia,,normal ,") == ["covid", "Viral Pneumonia", "normal"]
    assert split_list("") == []
