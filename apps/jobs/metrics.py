"""Prometheus metrics of the jobs app, with bounded labels (generator ids, outcome codes)."""

from __future__ import annotations

import logging

from prometheus_client import REGISTRY, Counter
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

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


DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800)


class JobStatsCollector:
    """Job counts and durations read from the database at scrape time.

    Jobs run in worker processes; counting them from the table makes every web process report
    the same, complete numbers, with no multiprocess registry to share.
    """

    def describe(self):
        return []

    def collect(self):
        from apps.jobs.selectors import job_counts, job_duration_buckets

        try:
            counts = job_counts()
            buckets, total, count = job_duration_buckets(DURATION_BUCKETS)
        except Exception:  # the database is down: the scrape still answers
            logger.debug("job metrics unavailable", exc_info=True)
            return
        jobs = GaugeMetricFamily(
            "image2model_jobs", "Jobs by generator and status", labels=["generator", "status"]
        )
        outcomes = GaugeMetricFamily(
            "image2model_job_outcomes",
            "Finished jobs by generator and outcome (succeeded, canceled or the error code)",
            labels=["generator", "outcome"],
        )
        for (generator, status, error_code), number in counts.items():
            jobs.add_metric([generator, status], number)
            if status in ("succeeded", "failed", "canceled"):
                outcome = error_code.lower() if status == "failed" and error_code else status
                outcomes.add_metric([generator, outcome], number)
        yield _merged(jobs)
        yield _merged(outcomes)
        histogram = HistogramMetricFamily(
            "image2model_job_duration_seconds", "Run time of finished jobs (started to finished)"
        )
        histogram.add_metric([], [(str(b), n) for b, n in buckets] + [("+Inf", count)], total)
        yield histogram


class QueueDepthCollector:
    def describe(self):
        return []

    def collect(self):
        from apps.jobs.selectors import queue_depths

        family = GaugeMetricFamily("image2model_queue_depth", "Messages waiting", labels=["queue"])
        try:
            for queue, depth in queue_depths().items():
                family.add_metric([queue], depth)
        except Exception:
            logger.debug("queue depth unavailable", exc_info=True)
            return
        yield family


def _merged(family: GaugeMetricFamily) -> GaugeMetricFamily:
    """Sum samples with equal labels (several error codes can map to one outcome)."""
    totals: dict[tuple, float] = {}
    for sample in family.samples:
        key = tuple(sample.labels.items())
        totals[key] = totals.get(key, 0) + sample.value
    merged = GaugeMetricFamily(family.name, family.documentation, labels=family._labelnames)
    for key, value in totals.items():
        merged.add_metric([v for _, v in key], value)
    return merged


_registered = False


def metrics_register() -> None:
    global _registered
    if not _registered:
        REGISTRY.register(CircuitStateCollector())
        REGISTRY.register(JobStatsCollector())
        REGISTRY.register(QueueDepthCollector())
        _registered = True
