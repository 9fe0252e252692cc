"""The dove_agent role's templates, rendered with Ansible's own templating from the role's
defaults (issue 22): the agent's configuration carries whom to believe, taken from the
inventory, and the agent built from it refuses what the inventory does not vouch for; the
systemd unit is hardened (checked by `systemd-analyze security --offline`)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "dove_agent"
sys.path.insert(0, str(ROLE / "files"))

from overlay_vxlan_agent import config as agent_config  # noqa: E402
from overlay_vxlan_agent import records as agent_records  # noqa: E402

# inventories/lab's hosts: three overlay hosts and the controller (not an overlay host)
HOSTVARS = {"h1": {"vxlan_underlay_ip": "192.168.1.2"}, "h2": {"vxlan_underlay_ip": "192.168.1.3"},
            "h3": {"vxlan_underlay_ip": "192.168.1.4"}, "ctl": {"vxlan_underlay_ip": "192.168.1.10"}}
NETWORKS = [{"name": "blue", "vni": 100, "vxlan_dev": "vxlan0", "bridge": "br1",
             "endpoints": [{"ip": "100.0.0.2", "mac": "02:00:64:00:00:02", "namespace": "ns1", "vm_if": "tap2"}],
             "remote_endpoints": [{"ip": "100.0.0.3", "mac": "02:00:64:00:00:03", "vtep": "192.168.1.3", "host": "h2"},
                                  {"ip": "100.0.0.4", "mac": "02:00:64:00:00:04", "vtep": "192.168.1.4", "host": "h3"}]}]


def render(template: str, **extra) -> str:
    """A role template as the role renders it on h1 (the role's defaults and vars, h1's facts)."""
    loader = DataLoader()
    role_vars = dict(loader.load_from_file(str(ROLE / "defaults" / "main.yml")), **loader.load_from_file(str(ROLE / "vars" / "main.yml")))
    variables = {name: trust_as_template(value) if isinstance(value, str) else value for name, value in role_vars.items()}
    variables.update(groups={"overlay": ["h1", "h2", "h3"], "controller": ["ctl"]}, hostvars=HOSTVARS, inventory_hostname="h1",
                     vxlan_underlay_ip="192.168.1.2", ansible_connection="ssh", dove_tls=False, dove_agent_networks=NETWORKS,
                     ansible_managed="Ansible managed")
    variables.update(extra)
    return Templar(loader=loader, variables=variables).template(trust_as_template((ROLE / "templates" / template).read_text()))


def test_the_agent_config_carries_the_inventory_and_the_agent_believes_only_it():
    config = agent_config.validate_config(json.loads(render("agent.json.j2")))
    assert config["inventory"]["vteps"] == {"h1": ["192.168.1.2"], "h2": ["192.168.1.3"], "h3": ["192.168.1.4"]}
    assert [(e["ip"], e["host"]) for e in config["inventory"]["endpoints"]] == [("100.0.0.2", "h1"), ("100.0.0.3", "h2"), ("100.0.0.4", "h3")]
    policy = agent_records.TrustPolicy.from_config(config)
    prefix = config["etcd"]["prefix"]

    def believe(ip, mac, vtep, host):
        key = "%s/endpoints/100/%s/%s" % (prefix, ip, host)
        return agent_records.validate_record(json.dumps({"vni": 100, "ip": ip, "mac": mac, "vtep": vtep, "host": host}),
                                             key=key, prefix=prefix, policy=policy)

    assert believe("100.0.0.3", "02:00:64:00:00:03", "192.168.1.3", "h2").vtep == "192.168.1.3"
    for forged, reason in [(("100.0.0.3", "02:00:64:00:00:03", "192.168.1.4", "h3"), "belongs to host h2"),
                           (("100.0.0.3", "02:00:64:00:00:03", "192.168.1.10", "ctl"), "not an inventory host"),
                           (("100.0.0.9", "02:00:64:00:00:09", "192.168.1.66", "h2"), "not a VTEP of host h2")]:
        with pytest.raises(agent_records.UntrustedRecord, match=reason):
            believe(*forged)


@pytest.mark.parametrize("change,message", [
    ({"inventory": {}}, "inventory.vteps: required"),
    ({"inventory": {"vteps": {"h2": ["239.1.1.1"]}}}, "vteps.h2"),
    ({"inventory": {"vteps": {"h 2": ["192.168.1.3"]}}}, "malformed host name"),
    ({"inventory": {"vteps": {"h2": "192.168.1.3"}, "endpoints": [{"vni": 100, "ip": "100.0.0.3", "host": "h9"}]}}, "not one of inventory.vteps"),
    ({"inventory": {"vteps": {"h2": "192.168.1.3", "h3": "192.168.1.4"},
                    "endpoints": [{"vni": 100, "ip": "100.0.0.3", "host": "h2"}, {"vni": 100, "ip": "100.0.0.3", "host": "h3"}]}},
     "is on host h2 and on host h3"),
    ({"max_records_per_vni": 0}, "max_records_per_vni: a positive integer"),
])
def test_the_inventory_option_is_checked(change, message):
    config = json.loads(render("agent.json.j2"))
    config.update(change)
    with pytest.raises(agent_config.ConfigError, match=message):
        agent_config.validate_config(config)


@pytest.mark.parametrize("extra,user", [
    ({"dove_tls": True}, "h1"),  # the defaults: TLS, and with it etcd authentication
    ({"dove_tls": True, "dove_etcd_auth": False}, None),
    ({"dove_tls": False}, None),  # no TLS, no authentication (the password would go in clear)
    ({"dove_tls": True, "dove_backend": "file"}, None),
])
def test_the_agent_logs_in_to_etcd_by_default(extra, user):
    etcd = json.loads(render("agent.json.j2", **extra))["etcd"]
    assert etcd["user"] == user
    assert etcd["password_file"] == ("/etc/overlay-vxlan/pki/etcd-password" if user else None)
    if user:  # what the agent accepts (load_config reads the file on the host)
        assert agent_config.validate_config(json.loads(render("agent.json.j2", **extra)))["etcd"]["user"] == user


@pytest.mark.parametrize("extra,auth", [({}, True), ({"dove_tls": False}, False), ({"dove_etcd_auth": False}, False),
                                        ({"controller_tls": False, "dove_etcd_auth": True}, True)])
def test_the_controller_enables_etcd_authentication_by_default(extra, auth):
    loader = DataLoader()
    defaults = loader.load_from_file(str(ROOT / "roles" / "controller" / "defaults" / "main.yml"))
    variables = {name: trust_as_template(value) if isinstance(value, str) else value for name, value in defaults.items()}
    variables.update(extra)
    templar = Templar(loader=loader, variables=variables)
    assert templar.template(trust_as_template("{{ controller_auth | bool }}")) is auth


def directives(unit: str) -> dict:
    found = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith("#"):
            name, value = line.split("=", 1)
            found.setdefault(name, []).append(value)
    return found


@pytest.mark.parametrize("announce", [True, False])
def test_the_unit_is_hardened_and_keeps_only_the_capabilities_the_agent_uses(announce, tmp_path):
    unit = render("overlay-vxlan-agent.service.j2", dove_agent_announce=announce, dove_agent_backend="etcd")
    found = directives(unit)
    raw = ["CAP_NET_RAW"] if announce else []
    assert found["CapabilityBoundingSet"] == [" ".join(["CAP_NET_ADMIN"] + raw)]  # no CAP_SYS_ADMIN: it enters no namespace
    assert found["RestrictAddressFamilies"] == [" ".join(["AF_UNIX", "AF_NETLINK", "AF_INET", "AF_INET6"] + (["AF_PACKET"] if announce else []))]
    for name, value in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
                        ("SystemCallArchitectures", "native"), ("MemoryMax", "256M"), ("ReadWritePaths", "-/run/overlay-vxlan-agent"),
                        ("RestrictNamespaces", "yes")]:
        assert found.get(name) == [value], (name, found.get(name))
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    path = tmp_path / "overlay-vxlan-agent.service"
    path.write_text(unit)
    proc = subprocess.run(["systemd-analyze", "security", "--offline=true", str(path)], capture_output=True, text=True, timeout=60)
    score = float(re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout).group(1))
    assert score <= 2.5, proc.stdout[-3000:]  # 7.3 MEDIUM before the hardening (docs/security.md)
