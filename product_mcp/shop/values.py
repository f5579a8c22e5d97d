"""Conversions at the shop's edge: cents and the seed's float prices, times, search terms.

Why here: every query module needs the same few rules (money in cents, UTC-naive datetimes in
the database, ISO strings on the wire), and one place keeps them exact.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from models import Product

STOPWORDS = frozenset(
    "a an and any are as at be but by for from i im in is it me my of on or some something "
    "that the this to want need with looking like would good best".split()
)


def cents(amount: float) -> int:
    return round(amount * 100)


def money(cents: int) -> float:
    return cents / 100


def iso(dt: datetime) -> str:
    return dt.replace(tzinfo=UTC).isoformat()


def search_terms(textval: str, *, drop_stopwords: bool = False) -> list[str]:
    words = [w.lower() for w in re.findall(r"\w+", textval)]
    if drop_stopwords:
        words = [w for w in words if w not in STOPWORDS] or words
    return list(dict.fromkeys(words))[:20]


def storable(textval: str) -> bool:
    """Whether both databases can store `textval`: no NUL (PostgreSQL's text refuses it) and
    no lone surrogate (neither driver can encode one as UTF-8; JSON's "\\ud800" makes one)."""
    if "\x00" in textval:
        return False
    try:
        textval.encode()
    except UnicodeEncodeError:
        return False
    return True


def product_of(row: Any) -> Product:
    return Product(
        id=row.id, name=row.name, price=money(row.price_cents), description=row.description
    )


def to_utc_naive(value: datetime | date, *, end_of_day: bool = False) -> datetime:
    """Normalise a filter bound; a bare date as `until` means through the end of that day."""
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
        if end_of_day:  # the calendar's last day ends at the end of time
            value = value + timedelta(days=1) if value.date() < date.max else datetime.max
    elif value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value
