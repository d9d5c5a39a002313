"""Prometheus metrics of the jobs app, with bounded labels (generator ids, outcome codes)."""

from __future__ import annotations

import logging

from prometheus_client import REGISTRY, Counter
from prometheus_client.core import GaugeMetricFamily

logger = logging.getLogger("image2model.jobs")

UPSTREAM_CALLS = Counter(
    "image2model_upstream_generations_total",
    "Generations sent to an upstream service, by generator and outcome",
    ["generator", "outcome"],
)
_STATES = ("closed", "half_open", "open")


class CircuitStateCollector:
    """Reads every generator's circuit state from the shared cache at scrape time, so any web
    process reports the state all workers see."""

    def describe(self):
        return []

    def collect(self):
        from apps.jobs.providers import generators_all

        family = GaugeMetricFamily(
            "image2model_circuit_state",
            "1 for the current circuit-breaker state of each upstream generator",
            labels=["generator", "state"],
        )
        for generator in generators_all():
            try:
                current = generator.circuit_state()
            except Exception:  # the cache is down: report nothing rather than fail the scrape
                logger.debug("circuit state of %s unknown", generator.id, exc_info=True)
                continue
            if current is None:
                continue
            for state in _STATES:
                family.add_metric([generator.id, state], 1.0 if state == current else 0.0)
        yield family


_registered = False


def metrics_register() -> None:
    global _registered
    if not _registered:
        REGISTRY.register(CircuitStateCollector())
        _registered = True
