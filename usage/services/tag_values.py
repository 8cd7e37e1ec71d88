"""The bound on distinct tag values: at most usage.bounds.TAG_MAX_VALUES values of each tag key
per account and UTC day, so the attribution roll-up cannot grow as fast as the records.

Checked before a write (ingestion refuses the events, the proxy the call, naming the field or
header) by `tag_values_refused`, cheaply enough for the hot paths:
- The values a day already has are read from the attribution roll-up itself (its tag
  dimensions' rows), whose unique index starts (account, dimension, day): one indexed query,
  and only for a batch holding a value this process has not seen for that account and day.
  Each process remembers what it read and admitted (`_seen`), so nearly every batch and
  proxied call needs no query at all.
- A value already there is always accepted, however many there are: only new values count.

How exact it is: writers checking at the same moment (other processes or threads) each see
the same room left and may together admit a few values past the limit; a value whose records
were all deleted since this process saw it still counts as seen. Either way the overshoot is
bounded by the writers running at once, never by the traffic. Counting exactly would mean a
lock or a counter row per account and day on every write, which the hot path cannot afford.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import date

from usage.bounds import TAG_KEYS, TAG_MAX_VALUES
from usage.models import DailyAttribution

# (account id, day) -> {tag key: values known to be there or admitted}. Bounded: emptied when
# it holds more days than a process plausibly writes to (the next batch of each reads again).
_seen: dict[tuple[int, date], dict[str, set[str]]] = {}
_SEEN_MAX = 512
_lock = threading.Lock()


def tag_values_refused(
    *, account_id: int, tagged: Sequence[tuple[date, Mapping[str, str]]]
) -> dict[int, str]:
    """Which of `tagged` (the UTC day and tags of each event to be written) carry a value past
    the bound: {index: the tag key}. The rest may be written. Values are admitted in sorted
    order, so the same batch gets the same answer whatever its order."""
    wanted: dict[date, dict[str, set[str]]] = {}
    for day, tags in tagged:
        if tags:
            by_key = wanted.setdefault(day, {})
            for tag, value in tags.items():
                if value and tag in TAG_KEYS:
                    by_key.setdefault(tag, set()).add(value)
    unknown = [
        day
        for day, by_key in wanted.items()
        if any(
            not values <= _seen.get((account_id, day), {}).get(tag, set())
            for tag, values in by_key.items()
        )
    ]
    if not unknown:
        return {}
    stored = _stored_values(account_id=account_id, days=unknown)
    refused: set[tuple[date, str, str]] = set()
    with _lock:
        if len(_seen) > _SEEN_MAX:
            _seen.clear()
        for day in unknown:
            known = _seen.setdefault((account_id, day), {})
            for tag, values in wanted[day].items():
                there = stored.get((day, tag), set())
                new = sorted(values - there)
                room = max(TAG_MAX_VALUES - len(there), 0)
                refused.update((day, tag, value) for value in new[room:])
                known[tag] = there | set(new[:room])
    if not refused:
        return {}
    return {
        index: tag
        for index, (day, tags) in enumerate(tagged)
        for tag, value in (tags or {}).items()
        if (day, tag, value) in refused
    }


def tag_values_forget() -> None:
    """Forget what this process has seen (tests: rolled-back rows leave no trace here)."""
    with _lock:
        _seen.clear()


def tag_values_problem(tag: str) -> str:
    """The sentence a refused value gets (after the field or header name)."""
    return (
        f"this account already has {TAG_MAX_VALUES} distinct {tag} values this UTC day; "
        "reuse one of them or tag with fewer distinct values"
    )


def _stored_values(*, account_id: int, days: list[date]) -> dict[tuple[date, str], set[str]]:
    """The distinct non-empty values of each tag key on the given days, from the roll-up (whose
    tag dimensions are named as the tag keys)."""
    found: dict[tuple[date, str], set[str]] = {}
    rows = (
        DailyAttribution.objects.filter(account_id=account_id, dimension__in=TAG_KEYS, day__in=days)
        .exclude(value="")
        .values_list("day", "dimension", "value")
        .distinct()
    )
    for day, tag, value in rows:
        found.setdefault((day, tag), set()).add(value)
    return found
