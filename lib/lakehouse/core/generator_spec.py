"""What the landing-zone generator makes: scale, seed and the defects it injects."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date


@dataclass(frozen=True)
class DefectSwitches:
    """Each kind of bad or awkward delivery the generator injects, switchable one by one.

    Rates are fractions of the records (or files) of a source; 0 turns a defect off.
    """

    redelivered_files: float = 0.05
    duplicate_events: float = 0.02
    out_of_order_events: float = 0.02
    late_events: float = 0.02
    deletes: float = 0.01
    malformed_lines: float = 0.005
    bad_values: float = 0.005
    schema_drift: bool = True
    bom: bool = True
    empty_file: bool = True
    gzip: bool = True
    missing_column: bool = True

    @classmethod
    def none(cls) -> DefectSwitches:
        """Every defect off: clean, in-order, exactly-once deliveries."""
        return cls(
            redelivered_files=0.0,
            duplicate_events=0.0,
            out_of_order_events=0.0,
            late_events=0.0,
            deletes=0.0,
            malformed_lines=0.0,
            bad_values=0.0,
            schema_drift=False,
            bom=False,
            empty_file=False,
            gzip=False,
            missing_column=False,
        )


@dataclass(frozen=True)
class FunnelRates:
    """How the web sessions go through the purchase funnel (docs/CLICKSTREAM.md). Every order
    comes from a session that views its products, adds them, checks out and buys; the other
    sessions browse: each rate below is the fraction of the browsing sessions that reached the
    step before that go on to the next, the rest leave there (abandon)."""

    browsing_per_order: float = 0.8  # browsing sessions a day, per order of the day
    anonymous: float = 0.6  # browsing sessions of visitors not signed in
    view: float = 0.7  # view at least one product (1 to 3)
    cart: float = 0.3  # of those, add the last viewed product to the cart
    checkout: float = 0.4  # of those, start the checkout, and leave without buying
    # Products a buying session views and does not buy: on average this many per order line.
    extra_views: float = 0.5
    # Browsing sessions that begin in the day's last five minutes: most go on past midnight.
    late_night: float = 0.03


@dataclass(frozen=True)
class GeneratorSpec:
    """Scale and shape of one generated landing zone; the same spec and seed give the same bytes."""

    seed: int = 42
    customers: int = 200
    days: int = 5
    orders_per_day: int = 100
    start_date: date = date(2024, 1, 1)
    defects: DefectSwitches = field(default_factory=DefectSwitches)
    funnel: FunnelRates = field(default_factory=FunnelRates)
