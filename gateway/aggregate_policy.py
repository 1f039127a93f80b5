"""What the gateway does with each product's records: pass them through raw, or summarise them
over windows (protocol.aggregate), keeping the raw records next to the summaries or at the
gateway only.

Cloud ops set the policy per product in the cloud (`PUT /api/v1/aggregation/{product}`);
every gateway fetches it (gateway.aggregate_feed) and keeps the last one in its database. A
site can override it with the gateway's own setting (`aggregate`, FLEETLOOP_AGGREGATE,
`--aggregate`), a comma-separated list of `product=mode`:
    raw            every record goes to the cloud as the device signed it (the default for any
                   product not listed: nothing is summarised unless someone asked for it)
    <N>            windows of N seconds (1..86400) are sent next to the raw records
    <N>:local      windows of N seconds are sent; the raw records stay at the gateway
e.g. `bike=60,mirror=300:local,engine=raw`; `raw` alone: every product raw. Why not in the
configs the cloud signs for devices: a device refuses any setting it does not know (checked on
the device, within 640 bytes), and a window is the gateway's work, not the device's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.errors import SettingsError
from protocol import aggregate as aggregate_codec
from protocol.record import valid_metric_name


@dataclass(frozen=True)
class ProductPolicy:
    window_s: int | None = None  # None: raw pass-through
    raw_local: bool = False  # windowed products only: the raw records stay at the gateway

    @property
    def windowed(self) -> bool:
        return self.window_s is not None

    def describe(self) -> str:
        return aggregate_codec.mode_text(self.window_s, self.raw_local)


RAW = ProductPolicy()


@dataclass(frozen=True)
class Policy:
    products: tuple[tuple[str, ProductPolicy], ...] = ()

    def of(self, product: str | None) -> ProductPolicy:
        """The policy of `product`; raw for an unknown or unlisted one."""
        for name, policy in self.products:
            if name == product:
                return policy
        return RAW

    @property
    def windowed(self) -> bool:
        return any(p.windowed for _, p in self.products)

    def describe(self) -> dict[str, str]:
        return {name: p.describe() for name, p in self.products}


def _mode(product: str, text: str) -> ProductPolicy:
    try:
        window_s, local = aggregate_codec.parse_mode(text)
    except ValueError as exc:
        raise SettingsError(f"aggregate: {product}={text}: {exc}") from None
    return ProductPolicy(window_s, local)


def from_modes(modes: Mapping[str, str]) -> Policy:
    """A policy from product -> mode (the cloud's feed); SettingsError says what is wrong."""
    for product in modes:
        if not valid_metric_name(product):
            raise SettingsError(f"aggregate: {product!r} is no product name")
    return Policy(tuple(sorted((p, _mode(p, m)) for p, m in modes.items())))


def parse(text: str) -> Policy:
    """A policy from `bike=60,mirror=300:local,engine=raw`; SettingsError says what is wrong."""
    products: dict[str, ProductPolicy] = {}
    if text.strip() == "raw":
        return Policy()  # every product raw, whatever the cloud says
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        product, sep, mode = part.partition("=")
        product, mode = product.strip(), mode.strip()
        if not sep or not valid_metric_name(product):
            raise SettingsError(f"aggregate: {part!r}: use product=raw|N|N:local, the product "
                                "a name of 1-32 of [a-z0-9_]")
        if product in products:
            raise SettingsError(f"aggregate: {product} is listed twice")
        products[product] = _mode(product, mode)
    return Policy(tuple(sorted(products.items())))
