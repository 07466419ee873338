"""Scrape a running operator's ``/metrics`` and read samples by name and labels."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Scrape:
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]

    def value(self, metric: str, /, **labels: str) -> float | None:
        return self.samples.get((metric, frozenset(labels.items())))

    def matching(self, metric: str, /, **labels: str) -> dict[frozenset[tuple[str, str]], float]:
        """Every sample of ``metric`` whose labels include ``labels``."""
        wanted = set(labels.items())
        return {key: value for (sample, key), value in self.samples.items() if sample == metric and wanted <= key}

    def total(self, metric: str, /, **labels: str) -> float:
        return sum(self.matching(metric, **labels).values())


def scrape(base_url: str, *, timeout: float = 5.0) -> Scrape:
    response = httpx.get(f"{base_url}/metrics", timeout=timeout)
    response.raise_for_status()
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Scrape(samples)


def labels(sample_labels: frozenset[tuple[str, str]]) -> Mapping[str, str]:
    return dict(sample_labels)
