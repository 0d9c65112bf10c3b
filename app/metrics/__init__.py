"""Prometheus metrics: what the service counts (`instruments.py`) and how it is scraped
(`exporter.py`). The README's Metrics section lists every metric and its labels."""

from app.metrics.exporter import Exporter
from app.metrics.instruments import CLOSE_REASONS, Metrics, Traffic, TurnClock, close_reason

__all__ = ["CLOSE_REASONS", "Exporter", "Metrics", "Traffic", "TurnClock", "close_reason"]
