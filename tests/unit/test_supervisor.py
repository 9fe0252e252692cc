"""plugins/filter/supervisor.py: the one rule for which supervisor runs etcd, FRR and the DOVE agent."""

from __future__ import annotations

import pytest

from ansible_collections.overlay.vxlan.plugins.filter.supervisor import AnsibleFilterError, choose_supervisor


@pytest.mark.parametrize(("requested", "on_lab", "systemd", "chosen"), [
    ("auto", False, True, "systemd"),
    ("auto", False, False, "process"),
    ("auto", True, True, "process"),      # a lab host never uses the machine's systemd
    ("systemd", True, False, "systemd"),  # asked for: kept
    ("process", False, True, "process"),
])
def test_the_choice(requested, on_lab, systemd, chosen):
    assert choose_supervisor(requested, on_lab, systemd) == chosen


def test_anything_else_is_named():
    with pytest.raises(AnsibleFilterError, match="supervisor='runit': must be one of auto, systemd, process"):
        choose_supervisor("runit", False, True)
