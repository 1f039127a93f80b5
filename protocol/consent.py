"""Consent tiers: what a product may share, declared once, as data.

Three tiers, each including the ones before it:
    essential  device health only: vitals (the state/heartbeat message) and faults
    usage      usage telemetry: rides, sessions, flight cycles
    personal   body or personal metrics: heart rate, reps, anything that shows a person's habits
Every metric of every product profile is mapped to the lowest tier that may carry it
(METRIC_TIERS); a metric with no tier is never sent. A new (or wiped) device starts at
`essential`: privacy by default. Only the customer widens it, on the product itself; a
narrowing may also come down from the customer's account in the cloud (a signed config whose
body carries `consent`), and a device refuses a downlink that would widen it.

The device imports this module once per start to learn which of its metrics it may keep
(allowed()), then unloads it; the cloud uses the same table to delete what a narrowing no
longer allows (above()).
"""

ESSENTIAL = "essential"
USAGE = "usage"
PERSONAL = "personal"
TIERS = (ESSENTIAL, USAGE, PERSONAL)  # narrowest first: a tier's rank is its index
DEFAULT = ESSENTIAL
ORIGINS = ("device", "cloud")  # who asked for a change: the customer on the product, or their account

METRIC_TIERS = {
    "bike": {"cadence": USAGE, "power": USAGE, "speed": USAGE, "heart_rate": PERSONAL},
    "mirror": {"session_active": USAGE, "brightness": USAGE, "room_temp": USAGE,
               "reps": PERSONAL},
    "engine": {"engine_unit": USAGE, "cycle": USAGE, "t24": USAGE, "t30": USAGE, "t50": USAGE,
               "p30": USAGE, "nf": USAGE, "nc": USAGE, "ps30": USAGE, "phi": USAGE, "nrf": USAGE,
               "nrc": USAGE, "bpr": USAGE, "htbleed": USAGE, "w31": USAGE, "w32": USAGE},
}


def rank(tier):
    """0 for essential ... 2 for personal; ValueError for anything else."""
    if tier not in TIERS:  # also refuses non-strings
        raise ValueError("unknown consent tier " + repr(tier)[:40])
    return TIERS.index(tier)


def allowed(product, tier):
    """The metric names a device of `product` may send at `tier`, sorted; () for a product
    with no table (nothing is sent that no one classified)."""
    limit = rank(tier)
    table = METRIC_TIERS.get(product, {})
    return tuple(sorted(name for name in table if TIERS.index(table[name]) <= limit))


def above(product, tier):
    """The metric names of `product` a device at `tier` may not send: what a narrowing to
    `tier` deletes. Metrics with no tier (or of an unknown product) are never kept either;
    the cloud removes every name not in allowed()."""
    limit = rank(tier)
    table = METRIC_TIERS.get(product, {})
    return tuple(sorted(name for name in table if TIERS.index(table[name]) > limit))


def narrower(a, b):
    """The narrower of two tiers."""
    return a if rank(a) <= rank(b) else b
