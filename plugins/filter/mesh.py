# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that turn the inventory into each host's share of the VXLAN mesh.

`compute_mesh` is a plain function (unit-tested in tests/unit/test_mesh.py): given every
overlay host's variables and the networks, it returns, for one host, each network it carries
with the flood list (every peer VTEP), the static fdb entries (every remote VM MAC -> its VTEP)
and the ARP-proxy entries (every remote VM IP -> its MAC). Nothing needs gathered facts: VM MACs
come from the inventory or are derived from the VM address.

There is one builder: the map of playbooks/validate.yml's inventory check
(module_utils/_overlay_map.build) and its `host_share`, which the vxlan_host_share filter
hands out too. This filter only builds that map from hostvars with the networks it is given, so
it checks and normalises every value exactly as the check does and returns exactly the share the
roles take from the run's map.
"""

from __future__ import annotations

import ipaddress

from ansible_collections.overlay.vxlan.plugins.filter.overlay_check import read_hosts, read_value
from ansible_collections.overlay.vxlan.plugins.module_utils import _overlay_map as overlay_map

# vm_mac lives in module_utils so that the inventory check (module_utils/_overlay_map.py) uses the
# very same derivation without importing a filter plugin; re-exported here.
from ansible_collections.overlay.vxlan.plugins.module_utils._vm_mac import vm_mac  # noqa: F401

# Documentation: one file per filter beside this one (vxlan_mesh.yml, vxlan_vm_mac.yml,
# vxlan_in_subnet.yml), so ansible-doc renders each filter with its own.

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # plain unit tests without Ansible
    AnsibleFilterError = ValueError  # type: ignore[misc,assignment]


def compute_mesh(hosts: dict, networks: list, me: str) -> list[dict]:
    """This host's networks with flood, fdb and neighbour entries towards every other host.

    `hosts`: {host: {variable: value}} (the variables of _overlay_map.VARIABLES; one left out
    gets the roles' default); `networks` replaces every host's vxlan_networks. Fails with every
    problem of the inventory, each naming the host(s), the variable and its value."""
    if me not in hosts:
        raise AnsibleFilterError("host %s is not one of the overlay hosts" % me)
    built, problems = overlay_map.build({host: dict(variables, vxlan_networks=networks) for host, variables in hosts.items()})
    if problems:
        raise AnsibleFilterError("The overlay inventory has %d problem%s:\n- %s"
                                 % (len(problems), "" if len(problems) == 1 else "s", "\n- ".join(problems)))
    return overlay_map.host_share(built, me)


def vxlan_mesh(hostvars, networks, overlay_hosts, host):
    # The given networks stand for every host's vxlan_networks (hostvars' are not read).
    networks = read_value(lambda: networks)
    hosts = read_hosts(hostvars, overlay_hosts, {str(name): {"vxlan_networks": networks} for name in overlay_hosts})
    return compute_mesh(hosts, networks, str(host))


def in_subnet(ip: str, cidr: str) -> bool:
    """Whether `ip` lies in the network of the interface address `cidr` (100.0.0.2/24)."""
    address = ipaddress.ip_address(str(ip))
    network = ipaddress.ip_interface(str(cidr)).network
    return address.version == network.version and address in network


def vxlan_vm_mac(address, network=""):
    return vm_mac(str(address), str(network))


class FilterModule:
    def filters(self):
        return {"vxlan_mesh": vxlan_mesh, "vxlan_vm_mac": vxlan_vm_mac, "vxlan_in_subnet": in_subnet}
