"""benchmarks/quiet.py: figures measured on a busy machine (load average above 1.5 when the
measurement started) are never written into docs/benchmarks.md, by any of the writers; quiet
ones are. Every writer is driven with synthetic results into a temporary docs file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import fleet_report  # noqa: E402
import modes_bench  # noqa: E402
import quiet  # noqa: E402
import report  # noqa: E402

OLD_DOCS = "# Benchmarks\n\n## Modes against N\n\nold figures\n\n## Fleet scale\n\nold fleet\n"


@pytest.mark.parametrize("recorded, expected", [
    ("1.2 / 3.0 / 4.0", 1.2), ("20.4 / 1.0 / 1.0", 20.4), (0.3, 0.3), (7, 7.0), ("", None), (None, None), ("?", None),
    (True, None),
])
def test_the_first_figure_of_a_recorded_load_is_the_start_load(recorded, expected):
    assert quiet.start_load(recorded) == expected


def test_noisy_names_every_measurement_above_the_limit_or_without_a_load():
    loads = {"a": "1.5 / 9 / 9", "b": "1.6 / 0 / 0", "c": None, "d": 0.0}
    assert quiet.noisy(loads) == {"b": "1.6 / 0 / 0", "c": None}
    with pytest.raises(SystemExit) as refused:
        quiet.refuse_noisy(loads, "the section X")
    message = str(refused.value)
    assert "the section X" in message and "b: 1.6 / 0 / 0" in message and "c: not recorded" in message
    assert "a:" not in message
    quiet.refuse_noisy({"a": "1.5"}, "the section X")  # at the limit: published


def _modes_row(load: str) -> dict:
    first = {"wall": 30.0, "cpu": 15.0, "rc": 0, "hosts_failed": 0, "module_runs_per_host": 25}
    return {"mode": "static", "hosts": 3, "first": first, "rerun": dict(first, wall=20.0), "tables_converged": {"fdb": 4, "neigh": 0},
            "tables_after_traffic": {"fdb": 4, "neigh": 0}, "first_ping_ms": 0.13, "first_ping_wall": 0.01, "bgp": None,
            "move": None, "load": load}


@pytest.fixture
def docs(tmp_path, monkeypatch):
    path = tmp_path / "benchmarks.md"
    path.write_text(OLD_DOCS)
    monkeypatch.setattr(report, "DOCS", path)
    return path


def test_modes_section_is_refused_from_a_busy_run_and_written_from_a_quiet_one(docs):
    with pytest.raises(quiet.NoisyMachine):
        modes_bench.write_docs([_modes_row("20.0 / 1 / 1")], {"date": "d", "load_before": "20.0 / 18.0 / 9.0"})
    assert docs.read_text() == OLD_DOCS
    modes_bench.write_docs([_modes_row("0.4 / 1 / 1")], {"date": "d", "load_before": "0.4 / 0.3 / 0.2"})
    assert "old figures" not in docs.read_text() and "| static | 3 |" in docs.read_text()


def test_modes_render_of_saved_runs_is_refused_when_one_of_them_was_busy(docs, tmp_path):
    quiet_run, busy_run = tmp_path / "quiet.json", tmp_path / "busy.json"
    quiet_run.write_text(json.dumps({"meta": {"date": "d1", "load_before": "0.2 / 0 / 0"}, "results": [_modes_row("0.2")]}))
    busy_run.write_text(json.dumps({"meta": {"date": "d2", "load_before": "4.1 / 3 / 2"},
                                    "results": [dict(_modes_row("4.1"), hosts=8)]}))
    with pytest.raises(quiet.NoisyMachine) as refused:
        modes_bench.main(["--render", str(quiet_run), str(busy_run)])
    assert str(busy_run) in str(refused.value) and str(quiet_run) + ":" not in str(refused.value)
    assert docs.read_text() == OLD_DOCS


def test_fleet_section_is_refused_when_any_of_its_measurements_started_busy(tmp_path):
    docs = tmp_path / "benchmarks.md"
    docs.write_text(OLD_DOCS)
    scaling = [{"size": n, "form": "file", "load_before": load} for n, load in ((3, "0.2 / 0 / 0"), (100, "9.9 / 5 / 5"))]
    with pytest.raises(quiet.NoisyMachine) as refused:
        fleet_report.render({"scaling": scaling}, docs, tmp_path / "plot.png", "## Fleet scale")
    assert "scaling 100 file" in str(refused.value) and "scaling 3 file" not in str(refused.value)
    assert docs.read_text() == OLD_DOCS


def test_report_render_keeps_a_busy_steps_section_and_names_it(docs, tmp_path, monkeypatch):
    """The converge step measured at load 6: its old section stays, the render says why."""
    results = tmp_path / "results"
    results.mkdir()
    monkeypatch.setattr(report, "RESULTS", results)
    (results / "converge.json").write_text(json.dumps([{"hosts": 3}]))
    docs.write_text(OLD_DOCS + "\n## Converge scaling\n\nold converge\n")
    meta = {"converge": {"date": "d", "load_before": "6.0 / 5 / 4", "load_after": "6 / 5 / 4"}}
    with pytest.raises(quiet.NoisyMachine) as refused:
        report.render(meta)
    assert "converge" in str(refused.value)
    assert "old converge" in docs.read_text()
