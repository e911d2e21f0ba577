"""Prometheus metrics: HTTP requests, per-model generation figures, and engine gauges read at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ..engines.runner import EngineRunner, GenerationStats

TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)
RATE_BUCKETS = (1, 2, 5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500)


class _EngineGauges(Collector):
    """Queue depth, active generations, busy slots and prefix-cache size of each loaded model, and how
    often its child process was restarted."""

    def __init__(self, loaded: Callable[[], dict[str, EngineRunner]]) -> None:
        self._loaded = loaded

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        families = {
            "queue": GaugeMetricFamily("parley_queue_depth", "Requests admitted and waiting for a slot",
                                       labels=["model"]),
            "active": GaugeMetricFamily("parley_active_generations", "Generations running in the engine",
                                        labels=["model"]),
            "cached": GaugeMetricFamily("parley_prefix_cache_tokens", "Tokens held in the prompt-prefix cache",
                                        labels=["model"]),
        }
        processes = {
            "restarts": CounterMetricFamily("parley_model_process_restarts", "Times a model's child process was "
                                            "replaced (after a crash or past the memory ceiling)", labels=["model"]),
            "crashes": CounterMetricFamily("parley_model_process_crashes", "Times a model's child process died",
                                           labels=["model"]),
        }
        for model, runner in self._loaded().items():
            health = runner.health()
            families["queue"].add_metric([model], max(0, health["admitted"] - health.get("busy_slots", 0)))
            families["active"].add_metric([model], health["active_generations"])
            families["cached"].add_metric([model], health.get("cached_tokens", 0))
            for key, family in processes.items():
                if key in health:  # models in the server's own process have no such figures
                    family.add_metric([model], health[key])
        yield from families.values()
        yield from processes.values()


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("parley_requests", "HTTP requests by route and status", ["route", "status"],
                                registry=r)
        self.prompt_tokens = Counter("parley_prompt_tokens", "Prompt tokens of finished generations", ["model"],
                                     registry=r)
        self.cache_hit_tokens = Counter("parley_prefix_cache_hit_tokens",
                                        "Prompt tokens read from the prefix cache", ["model"], registry=r)
        self.output_tokens = Counter("parley_output_tokens", "Generated tokens", ["model"], registry=r)
        self.ttft = Histogram("parley_time_to_first_token_seconds", "From engine submission to the first token",
                              ["model"], buckets=TTFT_BUCKETS, registry=r)
        self.decode_rate = Histogram("parley_decode_tokens_per_second", "Decode rate after the first token",
                                     ["model"], buckets=RATE_BUCKETS, registry=r)

    def watch_engines(self, loaded: Callable[[], dict[str, EngineRunner]]) -> None:
        self.registry.register(_EngineGauges(loaded))

    def request(self, route: str, status: int) -> None:
        self.requests.labels(route, str(status)).inc()

    def generation(self, model: str, stats: GenerationStats) -> None:
        self.prompt_tokens.labels(model).inc(stats.prompt_tokens)
        self.cache_hit_tokens.labels(model).inc(stats.cached_tokens)
        self.output_tokens.labels(model).inc(stats.output_tokens)
        if stats.ttft is not None:
            self.ttft.labels(model).observe(stats.ttft)
        if stats.decode_tok_s is not None:
            self.decode_rate.labels(model).observe(stats.decode_tok_s)
