"""Prometheus metrics of one daemon, in its own registry. (Skeleton: interface fixed.)"""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


class Metrics:
    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon
        self.registry = CollectorRegistry(auto_describe=True)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def observe_http(self, route: str, method: str, status: int, seconds: float) -> None:
        return None
