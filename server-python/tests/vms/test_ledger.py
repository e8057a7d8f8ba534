"""The cost ledger: intervals, prices, restarts, skew, unknown prices, days and budgets."""

from __future__ import annotations

import calendar
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any, Optional

import pytest

from gpu_workbench.vms.base import Vm
from gpu_workbench.vms.ledger import Ledger, budget_level, known_price

H = 3600.0
# 2026-11-20 10:00:00 UTC
T0 = float(calendar.timegm((2026, 11, 20, 10, 0, 0, 0, 0, 0)))


def vm(
    state: str,
    price: Optional[float] = 2.0,
    *,
    provider: str = "aws",
    id: str = "i-1",
    launched: Optional[float] = None,
    keeps: bool = False,
) -> Vm:
    return Vm(
        provider,
        id,
        "box-" + id,
        state,
        price_per_hour=price,
        launched_at=launched,
        stop_keeps_billing=keeps,
    )


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(str(tmp_path / "vms"))


def entry(report: Any, group: str, key: str) -> Any:
    return next(e for e in report[group] if e["key"] == key)


def test_file_is_wal_sqlite(ledger: Ledger) -> None:
    assert ledger.path.endswith("ledger.sqlite3")
    db = sqlite3.connect(ledger.path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


def test_running_accrues_and_repeats_do_not_split(ledger: Ledger) -> None:
    ledger.observe(vm("running"), T0)
    ledger.observe(vm("running"), T0 + H)
    ledger.observe(vm("running"), T0 + 2 * H)
    assert len(ledger.intervals("aws/i-1")) == 1
    assert ledger.accrued("aws/i-1", T0 + 3 * H) == pytest.approx(6.0)


def test_stop_start_cycles(ledger: Ledger) -> None:
    ledger.observe(vm("running"), T0)
    ledger.observe(vm("stopped"), T0 + H)  # 1 h billed
    ledger.observe(vm("stopped"), T0 + 5 * H)  # stopped: nothing
    ledger.observe(vm("running"), T0 + 6 * H)
    ledger.observe(vm("stopping"), T0 + 6.5 * H)  # still billed while stopping
    ledger.observe(vm("stopped"), T0 + 7 * H)
    assert ledger.accrued("aws/i-1", T0 + 10 * H) == pytest.approx(2.0 * (1 + 1))
    report = ledger.report(T0 + 10 * H, days=1)
    assert report["total"] == pytest.approx(4.0)
    assert entry(report, "byVm", "aws/i-1")["hours"] == pytest.approx(2.0)
    assert report["burnRatePerHour"] == 0.0


def test_price_change_splits_the_interval(ledger: Ledger) -> None:
    ledger.observe(vm("running", 2.0), T0)
    ledger.observe(vm("running", 3.0), T0 + H)
    assert [i["price"] for i in ledger.intervals("aws/i-1")] == [2.0, 3.0]
    assert ledger.accrued("aws/i-1", T0 + 2 * H) == pytest.approx(5.0)
    assert ledger.report(T0 + 2 * H)["burnRatePerHour"] == pytest.approx(3.0)


def test_restart_new_ledger_on_same_file_continues_open_interval(tmp_path: Path) -> None:
    first = Ledger(str(tmp_path / "vms"))
    first.observe(vm("running"), T0)
    second = Ledger(str(tmp_path / "vms"))  # a backend restart
    assert second.accrued("aws/i-1", T0 + 2 * H) == pytest.approx(4.0)
    second.observe(vm("stopped"), T0 + 3 * H)
    assert first.accrued("aws/i-1", T0 + 9 * H) == pytest.approx(6.0)


def test_first_seen_running_is_back_dated_to_launch(ledger: Ledger) -> None:
    ledger.observe(vm("running", launched=T0 - 2 * H), T0)
    assert ledger.intervals("aws/i-1")[0]["start"] == T0 - 2 * H
    assert ledger.accrued("aws/i-1", T0) == pytest.approx(4.0)


def test_back_dating_never_crosses_a_recorded_stop(ledger: Ledger) -> None:
    ledger.observe(vm("running", launched=T0), T0)
    ledger.observe(vm("stopped"), T0 + H)
    # Restarted somewhere in between; the provider's launch time is the restart.
    ledger.observe(vm("running", launched=T0 + 2 * H), T0 + 3 * H)
    assert ledger.accrued("aws/i-1", T0 + 3 * H) == pytest.approx(2.0 * (1 + 1))
    # A launch time older than the stop cannot move the start before the stop.
    ledger.observe(vm("stopped"), T0 + 4 * H)
    ledger.observe(vm("running", launched=T0 - 10 * H), T0 + 5 * H)
    starts = [i["start"] for i in ledger.intervals("aws/i-1")]
    assert starts == sorted(starts)
    assert ledger.intervals("aws/i-1")[-1]["start"] == T0 + 5 * H


def test_back_dating_never_crosses_a_terminate(ledger: Ledger) -> None:
    ledger.observe(vm("running"), T0)
    ledger.observe(vm("terminated"), T0 + H)
    ledger.observe(vm("running", launched=T0 - H), T0 + 2 * H)
    assert ledger.intervals("aws/i-1")[-1]["start"] == T0 + 2 * H


def test_terminated_never_bills(ledger: Ledger) -> None:
    ledger.observe(vm("running"), T0)
    ledger.observe(vm("terminated"), T0 + H)
    assert ledger.accrued("aws/i-1", T0 + 50 * H) == pytest.approx(2.0)
    assert ledger.report(T0 + 50 * H, days=5)["burnRatePerHour"] == 0.0


def test_linode_stopped_is_still_billed(ledger: Ledger) -> None:
    ledger.observe(vm("running", 1.5, provider="linode", keeps=True), T0)
    ledger.observe(vm("stopped", 1.5, provider="linode", keeps=True), T0 + H)
    report = ledger.report(T0 + 3 * H, days=1)
    assert report["total"] == pytest.approx(4.5)
    assert report["burnRatePerHour"] == pytest.approx(1.5)
    ledger.observe(vm("terminated", 1.5, provider="linode", keeps=True), T0 + 3 * H)
    assert ledger.accrued("linode/i-1", T0 + 9 * H) == pytest.approx(4.5)


def test_unknown_price_is_unknown_hours_never_zero(ledger: Ledger) -> None:
    ledger.observe(vm("running", None, id="u"), T0)
    ledger.observe(vm("running", 0.0, id="z", provider="lambda"), T0)  # 0 from an API: unknown
    report = ledger.report(T0 + 2 * H, days=1)
    assert report["total"] == 0.0
    assert report["unknownHours"] == pytest.approx(4.0)
    assert report["burnUnknown"] == 2
    assert ledger.accrued("aws/u", T0 + 2 * H) is None
    assert ledger.accrued("lambda/z", T0 + 2 * H) is None
    # Once a price is known the accrued cost is the known part (a lower bound).
    ledger.observe(vm("running", 1.0, id="u"), T0 + 2 * H)
    assert ledger.accrued("aws/u", T0 + 3 * H) == pytest.approx(1.0)
    assert entry(ledger.report(T0 + 3 * H), "byVm", "aws/u")["unknownHours"] == pytest.approx(2.0)


def test_free_only_for_local_and_ssh() -> None:
    assert known_price("local", 0.0) == 0.0
    assert known_price("ssh", 0) == 0.0
    assert known_price("aws", 0.0) is None
    assert known_price("aws", -1.0) is None
    assert known_price("aws", float("nan")) is None
    assert known_price("aws", 1.25) == 1.25


def test_clock_skew_is_clamped_and_logged(ledger: Ledger, caplog: Any) -> None:
    ledger.observe(vm("running"), T0 + H)
    with caplog.at_level(logging.WARNING, logger="gpu_workbench.vms.ledger"):
        ledger.observe(vm("stopped"), T0)  # the clock went back an hour
    assert "clock skew" in caplog.text
    for interval in ledger.intervals("aws/i-1"):
        assert interval["end"] is None or interval["end"] >= interval["start"]
    assert ledger.accrued("aws/i-1", T0 + 5 * H) == 0.0
    # A report asked for a time before the interval started is zero, not negative.
    ledger.observe(vm("running", id="late"), T0 + 10 * H)
    assert ledger.accrued("aws/late", T0) == 0.0
    assert ledger.report(T0)["total"] >= 0.0


def test_missing_vm_is_terminated_as_of_its_last_sighting(ledger: Ledger) -> None:
    ledger.observe(vm("running", id="a"), T0)
    ledger.observe(vm("running", id="b"), T0)
    ledger.observe(vm("running", id="a"), T0 + H)
    ledger.observe(vm("running", id="b"), T0 + 2 * H)
    assert ledger.mark_missing("aws", ["b"], T0 + 5 * H) == ["aws/a"]
    assert ledger.accrued("aws/a", T0 + 9 * H) == pytest.approx(2.0)  # until T0 + H
    assert ledger.accrued("aws/b", T0 + 3 * H) == pytest.approx(6.0)  # still running
    assert ledger.mark_missing("aws", ["b"], T0 + 6 * H) == []  # already terminated
    assert ledger.mark_missing("lambda", [], T0 + 6 * H) == []  # other providers untouched


def test_days_split_at_utc_midnight(ledger: Ledger) -> None:
    start = float(calendar.timegm((2026, 11, 20, 22, 0, 0, 0, 0, 0)))
    ledger.observe(vm("running", 1.0), start)
    now = start + 5 * H  # 2026-11-21 03:00
    report = ledger.report(now, days=3)
    days = {e["key"]: e for e in report["byDay"]}
    assert list(days) == ["2026-11-19", "2026-11-20", "2026-11-21"]
    assert days["2026-11-19"]["cost"] == 0.0
    assert days["2026-11-20"]["cost"] == pytest.approx(2.0)
    assert days["2026-11-21"]["cost"] == pytest.approx(3.0)
    assert report["since"] == float(calendar.timegm((2026, 11, 19, 0, 0, 0, 0, 0, 0)))
    assert report["now"] == now
    # days=1 covers today only.
    assert ledger.report(now, days=1)["total"] == pytest.approx(3.0)


def test_by_provider_and_labels(ledger: Ledger) -> None:
    ledger.observe(vm("running", 2.0, id="a"), T0)
    ledger.observe(vm("running", 1.0, provider="lambda", id="b"), T0)
    report = ledger.report(T0 + H, labels={"aws": "AWS EC2"})
    assert [e["key"] for e in report["byProvider"]] == ["aws", "lambda"]
    assert report["byProvider"][0]["label"] == "AWS EC2"
    assert entry(report, "byVm", "lambda/b")["label"] == "box-b"


def test_budgets_levels(ledger: Ledger) -> None:
    ledger.observe(vm("running", 10.0), T0)  # T0 is 10:00 UTC
    report = ledger.report(T0 + H, daily_budget=100.0, monthly_budget=12.0)
    budgets = {b["period"]: b for b in report["budgets"]}
    assert budgets["daily"] == {"period": "daily", "limit": 100.0, "spent": 10.0, "level": "ok"}
    assert budgets["monthly"]["level"] == "warning"  # 10 of 12 = 83 %
    assert ledger.report(T0 + 2 * H, monthly_budget=12.0)["budgets"][0]["level"] == "over"
    assert ledger.report(T0 + H)["budgets"] == []
    assert ledger.report(T0 + H, daily_budget=0.0)["budgets"] == []
    assert budget_level(79.9, 100) == "ok"
    assert budget_level(80, 100) == "warning"
    assert budget_level(100, 100) == "over"


def test_monthly_budget_counts_the_calendar_month_beyond_days(ledger: Ledger) -> None:
    ledger.observe(vm("running", 1.0), T0 - 5 * 24 * H)  # Nov 15
    ledger.observe(vm("stopped", 1.0), T0 - 5 * 24 * H + 10 * H)
    report = ledger.report(T0, days=1, monthly_budget=100.0)
    assert report["total"] == 0.0
    assert report["budgets"][0]["spent"] == pytest.approx(10.0)


def test_concurrent_writers(tmp_path: Path) -> None:
    errors = []

    def work(n: int) -> None:
        own = Ledger(str(tmp_path / "vms"))
        try:
            for k in range(20):
                own.observe(vm("running" if k % 2 == 0 else "stopped", id="c%d" % n), T0 + k)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    ledger = Ledger(str(tmp_path / "vms"))
    assert len(ledger.intervals("aws/c0")) == 20
