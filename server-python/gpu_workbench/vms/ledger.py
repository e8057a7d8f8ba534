"""The cost ledger: each VM's state intervals and prices in SQLite, and the cost report.

File: ``<data dir>/vms/ledger.sqlite3`` in WAL mode, so several backends (VS Code windows)
and the CLI can record and read at once; every write is one ``BEGIN IMMEDIATE`` transaction.

Model: per VM (key ``provider/id``) a sequence of intervals ``[start, end)`` each with one
state, one price (None: unknown) and whether that state is billed. The newest interval is
open (``end`` NULL) and grows with the clock, so a backend restart loses nothing: the open
interval simply continues.

Rules (decisions, documented once here):

- Billed states: ``pending``, ``running`` and ``stopping`` always; ``stopped`` only when the
  provider keeps billing stopped machines (Linode); ``terminated`` never. ``unknown`` counts
  as billed: a machine we cannot see may well be running, and over-stating cost is the safe
  side. Only billed time is counted in ``hours``.
- A price of None, negative or not finite is unknown; a price of 0 is unknown too unless the
  provider is ``local`` or ``ssh`` (machines the user already owns). Unknown-price time is
  reported as ``unknownHours``, never as $0.
- Launch-time reconciliation: when a VM enters ``pending``/``running`` and the provider's
  ``launched_at`` lies between the last recorded change and now, the change is dated at
  ``launched_at`` instead of now (a VM first seen running is back-dated to its launch). A
  launch time before the last recorded change (a stop or terminate) is ignored: the change is
  dated now, never before what was recorded. A restart between two observations that both
  saw it running is not detected (the time in between counts as running).
- A VM missing from a *successful* list of its provider is terminated as of the last time it
  was seen (``mark_missing``); that may under-count by one polling period, which is better
  than billing a machine that is gone until someone looks again.
- Clock skew: an observation earlier than the VM's last one is clamped to the last one (and
  logged); costs are never negative.
- ``accrued`` is None only when the VM has been billed at an unknown price and never at a
  known one; otherwise it is the known cost (a lower bound when some hours were unknown).
- Budgets compare the known cost of the current UTC day / UTC calendar month with the limit:
  ``warning`` at 80 %, ``over`` at 100 %. Limits that are absent or not positive are skipped.
"""

from __future__ import annotations

import calendar
import logging
import math
import os
import sqlite3
import threading
import time
from typing import Any, Dict, Iterable, List, Optional, Tuple

from .base import Vm

log = logging.getLogger(__name__)

LEDGER_FILE = "ledger.sqlite3"
DAY = 86400.0
BILLED_ALWAYS = ("pending", "running", "stopping", "unknown")
ACTIVE = ("pending", "running")  # states whose start the provider's launch time dates
FREE_OK = ("local", "ssh")  # providers whose price 0 means free rather than unknown
WARNING_RATIO = 0.8

_SCHEMA = """
CREATE TABLE IF NOT EXISTS vms (
    key TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    stop_keeps_billing INTEGER NOT NULL DEFAULT 0,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS intervals (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    price REAL,
    billed INTEGER NOT NULL,
    start REAL NOT NULL,
    end REAL
);
CREATE INDEX IF NOT EXISTS intervals_key ON intervals (key, start);
CREATE INDEX IF NOT EXISTS intervals_end ON intervals (end);
"""


def billed_state(state: str, stop_keeps_billing: bool) -> bool:
    if state in BILLED_ALWAYS:
        return True
    return state == "stopped" and stop_keeps_billing


def known_price(provider: str, price: Optional[float]) -> Optional[float]:
    """The price to record: None when unknown (see the module rules)."""
    if price is None or isinstance(price, bool):
        return None
    try:
        value = float(price)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(value) or value < 0:
        return None
    if value == 0 and provider not in FREE_OK:
        return None
    return value


def day_key(t: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(t))


def day_start(t: float) -> float:
    return math.floor(t / DAY) * DAY


def month_start(t: float) -> float:
    g = time.gmtime(t)
    return float(calendar.timegm((g.tm_year, g.tm_mon, 1, 0, 0, 0, 0, 0, 0)))


def budget_level(spent: float, limit: float) -> str:
    if spent >= limit:
        return "over"
    if spent >= WARNING_RATIO * limit:
        return "warning"
    return "ok"


class _Row:
    __slots__ = ("billed", "end", "key", "price", "start", "state")

    def __init__(self, row: Tuple[Any, ...]) -> None:
        self.key: str = row[0]
        self.state: str = row[1]
        self.price: Optional[float] = row[2]
        self.billed: bool = bool(row[3])
        self.start: float = row[4]
        self.end: Optional[float] = row[5]


class _Totals:
    __slots__ = ("cost", "hours", "unknown_hours")

    def __init__(self) -> None:
        self.cost = 0.0
        self.hours = 0.0
        self.unknown_hours = 0.0

    def add(self, seconds: float, price: Optional[float]) -> None:
        hours = seconds / 3600.0
        self.hours += hours
        if price is None:
            self.unknown_hours += hours
        else:
            self.cost += hours * price

    def entry(self, key: str, label: str) -> Dict[str, Any]:
        return {
            "key": key,
            "label": label,
            "cost": round(self.cost, 6),
            "unknownHours": round(self.unknown_hours, 6),
            "hours": round(self.hours, 6),
        }


class Ledger:
    """State intervals and prices of every VM seen, in ``<directory>/ledger.sqlite3``."""

    def __init__(self, directory: str) -> None:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self.path = os.path.join(directory, LEDGER_FILE)
        self._lock = threading.Lock()
        with _closing(self._connect()) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        db.execute("PRAGMA busy_timeout=10000")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def _write(self) -> "_Transaction":
        return _Transaction(self)

    # ---- recording ----

    def observe(self, vm: Vm, now: float) -> None:
        """Record what `vm` looks like at `now` (closing/opening intervals on a change)."""
        self.observe_many([vm], now)

    def observe_many(self, vms: Iterable[Vm], now: float) -> None:
        """`observe` for several VMs in one transaction (a whole provider's list)."""
        with self._write() as db:
            for vm in vms:
                self._observe_in(db, vm, now)

    def _observe_in(self, db: sqlite3.Connection, vm: Vm, now: float) -> None:
        price = known_price(vm.provider, vm.price_per_hour)
        billed = billed_state(vm.state, vm.stop_keeps_billing)
        row = db.execute("SELECT last_seen FROM vms WHERE key = ?", (vm.key,)).fetchone()
        if row is not None and now < row[0]:
            log.warning(
                "clock skew: observation of %s at %.3f is before its last one (%.3f); "
                "using the last one",
                vm.key,
                now,
                row[0],
            )
            now = float(row[0])
        if row is None:
            db.execute(
                "INSERT INTO vms (key, provider, id, name, stop_keeps_billing, first_seen,"
                " last_seen) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (vm.key, vm.provider, vm.id, vm.name, int(vm.stop_keeps_billing), now, now),
            )
        else:
            db.execute(
                "UPDATE vms SET name = ?, stop_keeps_billing = ?, last_seen = ? WHERE key = ?",
                (vm.name, int(vm.stop_keeps_billing), now, vm.key),
            )
        last = db.execute(
            "SELECT key, state, price, billed, start, end FROM intervals WHERE key = ?"
            " ORDER BY start DESC, rowid DESC LIMIT 1",
            (vm.key,),
        ).fetchone()
        current = _Row(last) if last is not None else None
        if current is not None and current.end is None:
            if current.state == vm.state and current.price == price and current.billed == billed:
                return
            floor = current.start
        elif current is not None:
            floor = current.end if current.end is not None else current.start
        else:
            floor = None
        at = now
        launched = vm.launched_at
        if (
            vm.state in ACTIVE
            and launched is not None
            and math.isfinite(launched)
            and launched < now
            and (current is None or current.end is not None or current.state not in ACTIVE)
        ):
            # A launch time before the last recorded change says nothing about this one.
            at = launched if floor is None or launched > floor else now
        if floor is not None and at < floor:
            at = floor
        if current is not None and current.end is None:
            db.execute("UPDATE intervals SET end = ? WHERE key = ? AND end IS NULL", (at, vm.key))
        db.execute(
            "INSERT INTO intervals (key, state, price, billed, start, end)"
            " VALUES (?, ?, ?, ?, ?, NULL)",
            (vm.key, vm.state, price, int(billed), at),
        )

    def mark_missing(self, provider: str, seen_ids: Iterable[str], now: float) -> List[str]:
        """After a successful list of `provider`: VMs not in it are terminated as of their
        last sighting. Returns the keys so marked."""
        seen = {"%s/%s" % (provider, i) for i in seen_ids}
        marked: List[str] = []
        with self._write() as db:
            rows = db.execute(
                "SELECT i.key, v.last_seen FROM intervals i JOIN vms v ON v.key = i.key"
                " WHERE v.provider = ? AND i.end IS NULL AND i.state != 'terminated'",
                (provider,),
            ).fetchall()
            for key, last_seen in rows:
                if key in seen:
                    continue
                at = min(float(last_seen), now)
                db.execute(
                    "UPDATE intervals SET end = MAX(start, ?) WHERE key = ? AND end IS NULL",
                    (at, key),
                )
                db.execute(
                    "INSERT INTO intervals (key, state, price, billed, start, end)"
                    " SELECT ?, 'terminated', NULL, 0, MAX(end), NULL FROM intervals WHERE key = ?",
                    (key, key),
                )
                marked.append(key)
        for key in marked:
            log.info("%s is gone from its provider's list; terminated as of its last sighting", key)
        return marked

    # ---- reading ----

    def _rows(self, db: sqlite3.Connection, since: float, key: Optional[str] = None) -> List[_Row]:
        sql = (
            "SELECT key, state, price, billed, start, end FROM intervals"
            " WHERE billed = 1 AND (end IS NULL OR end > ?)"
        )
        args: List[Any] = [since]
        if key is not None:
            sql += " AND key = ?"
            args.append(key)
        return [_Row(r) for r in db.execute(sql + " ORDER BY start", args).fetchall()]

    def intervals(self, key: str) -> List[Dict[str, Any]]:
        """Every interval of one VM (for tests and debugging)."""
        with self._lock, _closing(self._connect()) as db:
            rows = db.execute(
                "SELECT key, state, price, billed, start, end FROM intervals WHERE key = ?"
                " ORDER BY start, rowid",
                (key,),
            ).fetchall()
        return [
            {"state": r[1], "price": r[2], "billed": bool(r[3]), "start": r[4], "end": r[5]}
            for r in rows
        ]

    def accrued(self, key: str, now: float) -> Optional[float]:
        """Known cost of one VM over its whole history (see the module rules for None)."""
        return self.accrued_many([key], now).get(key)

    def accrued_many(self, keys: Iterable[str], now: float) -> Dict[str, Optional[float]]:
        wanted = list(dict.fromkeys(keys))
        result: Dict[str, Optional[float]] = {}
        with self._lock, _closing(self._connect()) as db:
            for key in wanted:
                cost = 0.0
                known = unknown = False
                for row in self._rows(db, -math.inf, key):
                    seconds = _span(row, -math.inf, now)
                    if row.price is None:
                        unknown = True
                    else:
                        known = True
                        cost += seconds / 3600.0 * row.price
                result[key] = None if unknown and not known else round(cost, 6)
        return result

    def report(
        self,
        now: float,
        days: int = 30,
        daily_budget: Optional[float] = None,
        monthly_budget: Optional[float] = None,
        labels: Optional[Dict[str, str]] = None,
    ) -> Dict[str, Any]:
        """A VmCostResult (protocol.py) for the `days` UTC days ending today.

        `labels` maps provider names to display names for byProvider.
        """
        days = max(1, int(days))
        today = day_start(now)
        since = today - (days - 1) * DAY
        month = month_start(now)
        start_of_reading = min(since, month)
        with self._lock, _closing(self._connect()) as db:
            rows = self._rows(db, start_of_reading)
            names = {
                r[0]: (r[1], r[2])
                for r in db.execute("SELECT key, provider, name FROM vms").fetchall()
            }
            open_rows = [
                _Row(r)
                for r in db.execute(
                    "SELECT key, state, price, billed, start, end FROM intervals"
                    " WHERE end IS NULL AND billed = 1"
                ).fetchall()
            ]
        total = _Totals()
        by_vm: Dict[str, _Totals] = {}
        by_provider: Dict[str, _Totals] = {}
        by_day: Dict[str, _Totals] = {}
        for d in range(days):
            by_day[day_key(since + d * DAY + 1)] = _Totals()
        today_cost = 0.0
        month_cost = 0.0
        for row in rows:
            provider = names.get(row.key, ("?", row.key))[0]
            for day, seconds in _split_days(row, start_of_reading, now):
                if row.price is not None:
                    cost = seconds / 3600.0 * row.price
                    if day >= month:
                        month_cost += cost
                    if day == today:
                        today_cost += cost
                if day < since:
                    continue
                total.add(seconds, row.price)
                by_vm.setdefault(row.key, _Totals()).add(seconds, row.price)
                by_provider.setdefault(provider, _Totals()).add(seconds, row.price)
                by_day.setdefault(day_key(day + 1), _Totals()).add(seconds, row.price)
        burn = 0.0
        burn_unknown = 0
        for row in open_rows:
            if row.price is None:
                burn_unknown += 1
            else:
                burn += row.price
        budgets: List[Dict[str, Any]] = []
        for period, limit, spent in (
            ("daily", daily_budget, today_cost),
            ("monthly", monthly_budget, month_cost),
        ):
            if limit is None or not math.isfinite(limit) or limit <= 0:
                continue
            budgets.append(
                {
                    "period": period,
                    "limit": limit,
                    "spent": round(spent, 6),
                    "level": budget_level(spent, limit),
                }
            )
        label_of = labels or {}
        vm_entries = [t.entry(key, names.get(key, ("?", key))[1]) for key, t in by_vm.items()]
        vm_entries.sort(key=lambda e: (-e["cost"], -e["unknownHours"], e["key"]))
        provider_entries = [t.entry(p, label_of.get(p, p)) for p, t in by_provider.items()]
        provider_entries.sort(key=lambda e: (-e["cost"], -e["unknownHours"], e["key"]))
        day_entries = [t.entry(d, d) for d, t in sorted(by_day.items())]
        return {
            "total": round(total.cost, 6),
            "unknownHours": round(total.unknown_hours, 6),
            "burnRatePerHour": round(burn, 6),
            "burnUnknown": burn_unknown,
            "byVm": vm_entries,
            "byDay": day_entries,
            "byProvider": provider_entries,
            "budgets": budgets,
            "since": since,
            "now": now,
        }


def _span(row: _Row, since: float, now: float) -> float:
    start = max(row.start, since)
    end = now if row.end is None else min(row.end, now)
    return max(0.0, end - start)


def _split_days(row: _Row, since: float, now: float) -> List[Tuple[float, float]]:
    """(UTC day start, seconds) pieces of a billed interval clipped to [since, now]."""
    start = max(row.start, since)
    end = now if row.end is None else min(row.end, now)
    pieces: List[Tuple[float, float]] = []
    while start < end:
        day = day_start(start)
        stop = min(end, day + DAY)
        pieces.append((day, stop - start))
        start = stop
    return pieces


class _Transaction:
    """``with ledger._write() as db``: one BEGIN IMMEDIATE transaction under the lock."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._db: Optional[sqlite3.Connection] = None

    def __enter__(self) -> sqlite3.Connection:
        self._ledger._lock.acquire()
        try:
            self._db = self._ledger._connect()
            self._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            if self._db is not None:
                self._db.close()
            self._ledger._lock.release()
            raise
        return self._db

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        db = self._db
        assert db is not None
        try:
            db.execute("ROLLBACK" if exc_type is not None else "COMMIT")
        finally:
            db.close()
            self._ledger._lock.release()


class _closing:  # contextlib.closing, typed for sqlite3
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> sqlite3.Connection:
        return self._db

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._db.close()
