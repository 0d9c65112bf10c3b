"""The metrics' own rules: bounded close reasons, flushes that add only what was gained,
settings that cannot work refused at startup, and a README that lists every metric."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.config import load_settings
from app.edge.refusals import Refusals
from app.errors import ConfigError
from app.metrics import CLOSE_REASONS, Exporter, Metrics, close_reason
from app.registry import SessionRegistry
from app.wire.connection import KEEPALIVE_TIMEOUT, SLOW_CLIENT, disconnect_reason
from app.wire.outbound import ERROR_CODES
from tests.support import ROOT


def test_a_close_reason_outside_the_known_set_counts_as_other() -> None:
    assert close_reason("client_end") == "client_end"
    assert close_reason("model_restart_limit") == "model_restart_limit"
    assert close_reason("something new") == "other"
    assert close_reason(None) == "other"


def test_every_reason_a_session_can_end_with_is_a_known_close_reason() -> None:
    # Where sessions decide how they end.
    modules = ("session.py", "reader.py", "relay.py", "outcome.py")
    source = "\n".join((ROOT / "app" / name).read_text() for name in modules)
    own = set(re.findall(r'Outcome\(\s*"(\w+)"', source))
    assert {"client_end", "model_stop", "server_shutdown", "model_error"} <= own  # the pattern finds them
    closes = {disconnect_reason(code) for code in (1000, 1001, 1005, 1006, 1007, 1009, 1012)}
    closes |= {disconnect_reason(1011, KEEPALIVE_TIMEOUT), disconnect_reason(1008, SLOW_CLIENT)}
    watchdog = {"idle", "max_duration"}  # app/edge/timeouts.py's expiries, as outcomes
    assert own | closes | watchdog <= CLOSE_REASONS
    assert ERROR_CODES <= CLOSE_REASONS  # a fatal error's code is the reason


def test_a_flush_adds_only_what_was_gained_since_the_last() -> None:
    metrics = Metrics()
    value = metrics.registry.get_sample_value
    metrics.traffic.frames_in += 3
    metrics.traffic.audio_out += 0.5
    metrics.flush(2, {"capacity": 1})
    metrics.flush(2, {"capacity": 1})  # nothing new: nothing added
    assert value("voice_frames_total", {"direction": "in"}) == 3
    assert value("voice_audio_seconds_total", {"direction": "out"}) == 0.5
    assert value("voice_refusals_total", {"reason": "capacity"}) == 1
    metrics.traffic.frames_in += 2
    metrics.flush(1, {"capacity": 4, "origin": 1})
    assert value("voice_frames_total", {"direction": "in"}) == 5
    assert value("voice_refusals_total", {"reason": "capacity"}) == 4
    assert value("voice_refusals_total", {"reason": "origin"}) == 1
    assert value("voice_sessions_active") == 1


def test_metrics_port_cannot_be_the_main_port() -> None:
    with pytest.raises(ConfigError, match="METRICS_PORT=9000 is PORT"):
        load_settings({"PORT": "9000", "METRICS_PORT": "9000"}, env_file=None)
    assert load_settings({"PORT": "9000", "METRICS_PORT": "9100"}, env_file=None).metrics_port == 9100


def test_a_multiproc_dir_prometheus_client_did_not_see_stops_startup(tmp_path: Path) -> None:
    # This test process imported prometheus-client without PROMETHEUS_MULTIPROC_DIR, as a
    # server does when the variable is only in .env: its values are in memory, not files.
    with pytest.raises(ConfigError, match="process environment"):
        Exporter(
            Metrics(), SessionRegistry(), Refusals(), host="127.0.0.1", port=0, multiproc_dir=str(tmp_path)
        )


def test_the_readme_lists_every_metric_with_its_labels_and_every_close_reason() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    rows = {row.split("|")[1].strip(" `"): row for row in section.splitlines() if row.startswith("| `voice_")}
    metrics = Metrics()  # a sample of every labelled metric, so that its labels show
    metrics.session_ended("client_end", 1.0)
    metrics.tool_called("calculator", "success", 0.1)
    metrics.error_sent("invalid_json")
    metrics.restarts.labels("timeout", "ok").inc()
    metrics.flush(0, {})
    for family in metrics.registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        assert name in rows, f"{name} is not in the README's Metrics table"
        labels = {label for sample in family.samples for label in sample.labels if label != "le"}
        labels_column = rows[name].split("|")[3]
        assert all(f"`{label}`" in labels_column for label in labels), (name, labels)
    own = CLOSE_REASONS - ERROR_CODES
    assert all(f"`{reason}`" in section for reason in own), sorted(r for r in own if f"`{r}`" not in section)
