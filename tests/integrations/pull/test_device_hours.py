"""The rules reconciliation judges device-hours by (integrations.pull.completeness)."""

from datetime import UTC, datetime

from integrations.pull.completeness import compare, judge

H0 = datetime(2026, 3, 1, 10, tzinfo=UTC)
H1 = datetime(2026, 3, 1, 11, tzinfo=UTC)


def test_compare_sorts_missing_surplus_and_remembered_doubles():
    remote = {(H0, "a"): 5, (H0, "b"): 2, (H1, "a"): 4, (H1, "c"): 3}
    local = {(H0, "a"): 5, (H0, "b"): 3, (H1, "a"): 1}
    remembered = {(H1, "a"): (4, 1)}  # Golioth holds 4, three of them doubles: seen before

    found = compare(remote, local, remembered)

    assert found.missing == {(H1, "c"): 3}
    assert found.readings_missing == 3
    assert (found.consistent, found.surplus_buckets, found.surplus_readings) == (1, 1, 1)
    assert len(found.checked) == 4


def test_remembered_counts_that_changed_are_missing_again():
    found = compare({(H0, "a"): 5}, {(H0, "a"): 1}, {(H0, "a"): (4, 1)})
    assert found.missing == {(H0, "a"): 5}


def test_judge_repaired_consistent_or_still_missing():
    missing = {(H0, "a"): 4, (H0, "b"): 4, (H0, "c"): 4}
    before = {(H0, "a"): 1, (H0, "b"): 1, (H0, "c"): 1}
    after = {(H0, "a"): 4, (H0, "b"): 2, (H0, "c"): 2}
    fetched = {(H0, "a"): 4, (H0, "b"): 2, (H0, "c"): 3}  # c: Golioth sent 3 distinct, 2 stored

    verdict = judge(missing, before, after, fetched)

    assert verdict.repaired == 1
    assert verdict.consistent == [((H0, "b"), 4, 2)]
    assert verdict.still_missing == 1
