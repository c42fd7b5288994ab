"""Day-level anomaly checks judged in plain Python (`quality.days.judge`), and what a report page
may show of a record (`core.pii` masking). No Spark: the Spark side only aggregates a window."""

from __future__ import annotations

import datetime as dt

import pytest

from lakehouse.core.pii import mask_raw, mask_record, mask_text
from lakehouse.quality.days import ALL, describe, judge
from lakehouse.quality.report import reason_kind
from lakehouse.quality.suites import DayAnomalySpec

D0 = dt.date(2024, 3, 1)


def day(i: int) -> dt.date:
    return D0 + dt.timedelta(days=i)


ORDERS = DayAnomalySpec(date_column="order_date", max_decrease=0.4, max_increase=1.5)


def history(values: list[float], group: str = ALL) -> list[tuple[dt.date, str, float | None]]:
    return [(day(i), group, v) for i, v in enumerate(values)]


def test_a_half_day_after_a_normal_history_is_flagged_with_its_band() -> None:
    values = history([100, 104, 96, 101, 99, 98, 102, 103, 50])
    points = judge(values, [day(8)], ORDERS)
    (checked,) = [p for p in points if p.checked]
    # Median of the 8 days before: 100.5; allowed 60.3 .. 251.25.
    assert (checked.day, checked.value, checked.median, checked.history) == (day(8), 50, 100.5, 8)
    assert checked.low == pytest.approx(60.3) and checked.high == pytest.approx(251.25)
    assert checked.anomalous
    assert describe(checked, "sum(orders)") == (
        "sum(orders) on 2024-03-09: 50, expected 60.3 to 251.2 (median 100.5 of the 8 days before)"
    )
    # Every day of the window is returned for the chart; only the checked one is judged.
    assert [p.day for p in points] == [day(i) for i in range(9)]
    assert [p.checked for p in points] == [False] * 8 + [True]


@pytest.mark.parametrize(
    ("value", "flagged"), [(60, False), (59.9, True), (250, False), (250.1, True)]
)
def test_the_band_is_inclusive(value: float, flagged: bool) -> None:
    points = judge(history([100] * 7 + [value]), [day(7)], ORDERS)
    assert points[-1].anomalous is flagged


def test_a_day_that_never_came_counts_as_zero_and_is_flagged() -> None:
    points = judge(history([100] * 8), [day(8)], ORDERS)
    assert (points[-1].day, points[-1].value, points[-1].anomalous) == (day(8), 0.0, True)


def test_with_missing_skip_a_day_without_rows_is_not_judged() -> None:
    rate = DayAnomalySpec(date_column="d", max_increase=1.0, slack=0.05, missing="skip")
    points = judge(history([0.01] * 8), [day(8)], rate)
    assert points[-1].value is None and not points[-1].judged and not points[-1].anomalous


def test_a_young_table_is_not_judged() -> None:
    points = judge(history([100, 100, 100, 100, 100, 100, 10]), [day(6)], ORDERS)
    assert points[-1].history == 6 and not points[-1].judged and not points[-1].anomalous


def test_only_days_within_the_history_window_count() -> None:
    spec = DayAnomalySpec(date_column="d", max_decrease=0.4, history_days=7, min_history=7)
    # 30 days of 1000, then 7 days of 100: the day after is judged against the 100s only.
    values = history([1000] * 30 + [100] * 7 + [95])
    (checked,) = [p for p in judge(values, [day(37)], spec) if p.checked]
    assert (checked.median, checked.anomalous) == (100, False)


def test_each_group_is_judged_against_its_own_history_and_a_silent_one_is_flagged() -> None:
    by_source = DayAnomalySpec(
        date_column="ingest_date", group_by="source", value="sum(records)", max_decrease=0.4
    )
    values = [
        *history([1000] * 8 + [990], "orders"),
        *history([50] * 8, "payments"),  # nothing on the checked day
        *history([5] * 8 + [5], "fx_rates"),
    ]
    checked = {p.group: p for p in judge(values, [day(8)], by_source) if p.checked}
    assert {g: (p.value, p.anomalous) for g, p in checked.items()} == {
        "fx_rates": (5, False),
        "orders": (990, False),
        "payments": (0.0, True),
    }
    assert describe(checked["payments"], "sum(records)").startswith(
        "sum(records) for payments on 2024-03-09: 0, expected 30 to any"
    )


def test_slack_widens_a_rate_band_around_a_zero_median() -> None:
    rate = DayAnomalySpec(date_column="d", max_increase=1.0, slack=0.05, missing="skip")
    quiet = judge(history([0.0] * 8 + [0.04]), [day(8)], rate)[-1]
    loud = judge(history([0.0] * 8 + [0.2]), [day(8)], rate)[-1]
    assert (quiet.high, quiet.anomalous, loud.anomalous) == (0.05, False, True)


def test_checked_days_with_no_rows_at_all_still_get_a_point() -> None:
    points = judge([], [day(3)], ORDERS)
    assert [(p.day, p.group, p.value, p.judged) for p in points] == [(day(3), ALL, 0.0, False)]


# --- what a page may show of a record ------------------------------------------------------

PERSONAL = frozenset({"email", "phone", "first_name", "last_name", "ip"})


def test_a_record_is_masked_field_by_field() -> None:
    record = {
        "customer_id": "c1",
        "email": "ann.lee@example.com",
        "email_hash": "ab" * 32,
        "after": {"first_name": "Ann", "phone": "+44 20 7946 0018", "city": "Leeds"},
        "note": "write to ann.lee@example.com from 10.1.2.3",
        "amount": 12.5,
        "Phone": 4155550123,  # a number in a personal field, whatever the key's case
    }
    assert mask_record(record, PERSONAL) == {
        "customer_id": "c1",
        "email": "•••",
        "email_hash": "abababab…",
        "after": {"first_name": "•••", "phone": "•••", "city": "Leeds"},
        "note": "write to ••• from •••",
        "amount": 12.5,
        "Phone": "•••",
    }


def test_raw_text_is_masked_or_withheld() -> None:
    line = '{"op":"c","after":{"email":"a@b.co","last_name":"Lee","customer_id":"c9"}}'
    assert mask_raw(line, PERSONAL, personal_source=True) == (
        '{"op": "c", "after": {"email": "•••", "last_name": "•••", "customer_id": "c9"}}'
    )
    broken = '{"op":"c","after":{"first_name":"Ann","last_name":"Lee'
    assert mask_raw(broken, PERSONAL, personal_source=True) == (
        f"[{len(broken)} characters not shown: a record of a source with personal data]"
    )
    csv = "pev_1,pay_1,o1,2024-01-02T09:30:57Z,captured,-157.21,GBP,card,psp_1"
    assert mask_raw(csv, PERSONAL, personal_source=False) == csv


def test_dates_and_amounts_are_not_mistaken_for_phone_numbers() -> None:
    text = "order_ts: 2024-01-02T09:30:57Z amount -157.21 line 1234567"
    assert mask_text(text) == text
    assert mask_text("call +1 (555) 010-9999 now") == "call ••• now"


def test_reasons_group_by_rule_without_their_values() -> None:
    assert reason_kind("not valid JSON: Unterminated string starting at at column 146") == (
        "not valid JSON: Unterminated string starting at at column N"
    )
    assert reason_kind("status: 'shipped_maybe' is not one of placed, paid") == (
        "status: '…' is not one of placed, paid"
    )
    assert mask_text("last_name: 'O'Brien' is too long", quoted=True) == (
        "last_name: '•••' is too long"
    )
    assert reason_kind("amount: -157.21 must be greater than 0") == (
        "amount: N must be greater than N"
    )


def test_a_value_that_is_not_a_number_is_neither_judged_nor_history() -> None:
    values = history([100] * 4 + [float("nan")] + [100] * 3 + [float("inf")])
    points = judge(values, [day(8)], ORDERS)
    assert [p.value for p in points][4] is None
    assert (points[-1].value, points[-1].history, points[-1].judged) == (None, 7, False)
