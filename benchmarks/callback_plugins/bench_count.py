# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark-only callback: counts, per host, the tasks and the module runs on the host.

Enabled by benchmarks/converge_bench.py with ANSIBLE_CALLBACK_PLUGINS pointing here,
ANSIBLE_CALLBACKS_ENABLED=bench_count and BENCH_COUNT_FILE=<path>; writes a JSON file at the
end of the run:

    {"hosts": {"h1": {"tasks": 9, "module_runs": 5, "by_action": {...}}},
     "tasks": [{"name": ..., "action": ..., "seconds": ...}]}

A task with a loop is one task and as many module runs as items. Actions that run on the
controller only (set_fact, assert, debug, include_*, meta) count as tasks, never as module runs.
"""

from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: bench_count
type: aggregate
short_description: Count tasks and module runs per host (overlay.vxlan benchmarks only)
description:
  - Writes per-host task and module-run counts and per-task wall times to C(BENCH_COUNT_FILE).
requirements:
  - enabled with C(ANSIBLE_CALLBACKS_ENABLED=bench_count)
"""

CONTROLLER_ONLY = {
    "set_fact", "assert", "debug", "include_tasks", "include_role", "import_tasks", "import_role", "meta", "fail",
    "include_vars", "add_host", "group_by", "pause", "set_stats",
}


def _short(action: str) -> str:
    return action.rsplit(".", 1)[-1]


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_count"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.hosts: dict[str, dict] = {}
        self.tasks: list[dict] = []
        self._current = None

    def _host(self, name: str) -> dict:
        return self.hosts.setdefault(name, {"tasks": 0, "module_runs": 0, "by_action": {}})

    def _close_task(self):
        if self._current is not None:
            self._current["seconds"] = round(time.monotonic() - self._current.pop("_start"), 4)
            self.tasks.append(self._current)
            self._current = None

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._close_task()
        self._current = {"name": task.get_name(), "action": _short(task.action), "_start": time.monotonic()}

    def _result(self, result, status):
        host = self._host(result._host.get_name())
        action = _short(result._task.action)
        host["tasks"] += 1
        if action in CONTROLLER_ONLY or status == "skipped":
            return
        items = result._result.get("results")
        runs = sum(1 for item in items if not item.get("skipped")) if isinstance(items, list) else 1
        host["module_runs"] += runs
        host["by_action"][action] = host["by_action"].get(action, 0) + runs

    def v2_runner_on_ok(self, result):
        self._result(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._result(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._result(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        self._close_task()
        path = os.environ.get("BENCH_COUNT_FILE")
        if path:
            with open(path, "w") as handle:
                json.dump({"hosts": self.hosts, "tasks": self.tasks}, handle, indent=1)
