"""Prometheus metrics of the bus, registered once per `CollectorRegistry`."""

from __future__ import annotations

import weakref

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, BusMetrics] = weakref.WeakKeyDictionary()


class BusMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.published = Counter(
            "townhall_bus_published", "Messages published", ["topic"], registry=registry
        )
        self.handled = Counter(
            "townhall_bus_handled",
            "Messages handled and acked",
            ["topic", "group"],
            registry=registry,
        )
        self.retried = Counter(
            "townhall_bus_retried",
            "Handler failures retried",
            ["topic", "group"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "townhall_bus_dead_lettered",
            "Messages moved to the dead-letter store",
            ["topic", "group"],
            registry=registry,
        )
        self.handler_seconds = Histogram(
            "townhall_bus_handler_seconds",
            "Handler latency",
            ["topic", "group"],
            registry=registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.lag = Gauge(
            "townhall_bus_consumer_lag",
            "Messages not yet delivered to the group, where the broker can tell",
            ["topic", "group"],
            registry=registry,
        )


def bus_metrics(registry: CollectorRegistry | None = None) -> BusMetrics:
    """The bus metrics on `registry` (the global one by default), created on first use."""
    registry = registry or REGISTRY
    metrics = _by_registry.get(registry)
    if metrics is None:
        metrics = _by_registry[registry] = BusMetrics(registry)
    return metrics
