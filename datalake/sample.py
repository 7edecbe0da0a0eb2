"""Deterministic sample order events, valid and defective, as a shop backend would send them."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

STATUSES = ("PLACED", "PAID", "SHIPPED", "CANCELLED", "RETURNED")
COUNTRIES = ("KR", "JP", "DE", "US", "FR", "GB")
CURRENCIES = {"KR": "KRW", "JP": "JPY", "DE": "EUR", "US": "USD", "FR": "EUR", "GB": "GBP"}
#: A price drawn as n (100-20,000) is n cents, n yen or 10n won: prices of the same goods, each in
#: its currency's own units (won and yen have no minor unit).
PRICE_UNITS = {"KRW": (10, 0), "JPY": (1, 0), "EUR": (0.01, 2), "USD": (0.01, 2), "GBP": (0.01, 2)}
OFFSETS = (timezone(timedelta(hours=9)), UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=1)))


def order(rng: random.Random, i: int, start: datetime, max_items: int = 3) -> dict[str, Any]:
    """One valid order event; its time is within three days after ``start``."""
    country = rng.choice(COUNTRIES)
    currency = CURRENCIES[country]
    scale, decimals = PRICE_UNITS[currency]
    when = start + timedelta(seconds=rng.randrange(3 * 86400))
    lines = [(rng.randint(1, 4), rng.randint(100, 20000)) for _ in range(rng.randint(1, max_items))]
    items = [
        {"sku": f"SKU-{rng.randrange(500):04d}", "qty": q, "unit_price": f"{c * scale:.{decimals}f}"}
        for q, c in lines
    ]
    amount = sum(q * c for q, c in lines) * scale
    ts: Any = when.astimezone(rng.choice(OFFSETS)).isoformat() if i % 5 else int(when.timestamp() * 1000)
    return {
        "order_id": f"o-{i:08d}",
        "customer_id": f"c-{rng.randrange(1000):05d}",
        "customer_email": f"user{i}@example.com",
        "customer_phone": f"010-{rng.randrange(10000):04d}-{rng.randrange(10000):04d}",
        "order_ts": ts,
        "status": rng.choice(STATUSES),
        "currency": currency,
        "amount": f"{amount:.{decimals}f}",
        "country": country,
        "channel": rng.choice(("web", "app", "store")),
        "items": items,
    }


def payloads(
    n: int,
    *,
    seed: int = 7,
    start: datetime | None = None,
    defects: bool = True,
    max_items: int = 3,
    first_id: int = 0,
) -> list[bytes]:
    """``n`` payloads with order ids from ``first_id``. With ``defects``: ~3% malformed, ~3%
    invalid, ~4% re-sent duplicates."""
    rng = random.Random(seed)
    start = start or datetime(2024, 5, 1, tzinfo=UTC)
    out: list[bytes] = []
    sent: list[bytes] = []
    for i in range(first_id, first_id + n):
        roll = rng.random() if defects else 1.0
        if roll < 0.03:
            out.append(rng.choice([b"{not json", b"", b"\xff\xfe\x00", b"[1,2,3]", b'{"order_id": 5}']))
        elif roll < 0.06:
            bad = order(rng, i, start)
            bad[rng.choice(["amount", "status", "order_ts", "country"])] = rng.choice(
                ["-1", "LOST", "yesterday", "Korea"]
            )
            out.append(json.dumps(bad).encode())
        elif roll < 0.10 and sent:
            out.append(rng.choice(sent))  # at-least-once: the producer re-sends an earlier event
        else:
            payload = json.dumps(order(rng, i, start, max_items)).encode()
            sent.append(payload)
            out.append(payload)
    return out
