# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab_host module's work: its options (SPEC), checks, the lab's read, plan and apply.

The module file is its documentation and a short main; the work is here, by step: parameters,
reading the lab, planning (pure), applying, destroying. Process and namespace plumbing that the
connection plugin shares lives in _lab (standard library only).
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import os
from contextlib import contextmanager

from ansible_collections.overlay.vxlan.plugins.module_utils import _fastnl
from ansible_collections.overlay.vxlan.plugins.module_utils import _lab as lab
from ansible_collections.overlay.vxlan.plugins.module_utils import _validate as v
from ansible_collections.overlay.vxlan.plugins.module_utils._netlink import (
    ABSENT_ERRNOS,
    InputError,
    KernelError,
    NetlinkError,
    addresses_of,
    describe_netlink_error,
    get_link,
    link_info_data,
    link_is_up,
    link_kind,
)

try:
    from pyroute2 import IPRoute
except ImportError:  # pragma: no cover - require_pyroute2 reports it
    IPRoute = None


# --- parameters ---------------------------------------------------------------------------------

def validate(params: dict) -> dict:
    """Every parameter checked and normalised before anything on the machine is touched."""
    name = params["lab_name"]
    if not lab.valid_name(name):
        raise InputError("lab_name", name, "use letters, digits, '_', '.' and '-' (at most 63 characters)")
    wanted = {
        "lab": name,
        "dev": v.ifname("underlay_dev", params["underlay_dev"]),
        "bridge": v.ifname("fabric_bridge", params["fabric_bridge"]),
        "mtu": v.int_range("underlay_mtu", params["underlay_mtu"], 68, 65535),
        "state": params["state"],
        "exact": params["exact"],
        "kill_timeout": params["kill_timeout"],
        "static_neighbours": params["static_neighbours"],
        "whole_lab": params["state"] == "absent" and params["hosts"] is None,
        "hosts": {},
    }
    if wanted["kill_timeout"] < 0:
        raise InputError("kill_timeout", wanted["kill_timeout"], "must be 0 or more")
    family = None
    for index, host in enumerate(params["hosts"] or []):
        field = "hosts[%d]" % index
        host_name = host["name"]
        if not lab.valid_name(host_name):
            raise InputError(field + ".name", host_name, "use letters, digits, '_', '.' and '-' (at most 63 characters)")
        if host_name in wanted["hosts"]:
            raise InputError(field + ".name", host_name, "is listed twice")
        addr = v.ip_address(field + ".underlay_ip", host["underlay_ip"], version=family)
        family = addr.version
        address = v.unicast_ip(field + ".underlay_ip", host["underlay_ip"], version=family)
        if address in wanted["hosts"].values():
            raise InputError(field + ".underlay_ip", address, "is the underlay address of another host too")
        wanted["hosts"][host_name] = address
    wanted["prefix"] = v.int_range("underlay_prefix", params["underlay_prefix"], 1, 128 if family == 6 else 32)
    wanted["family"] = family or 4
    return wanted


def port_name(host: str) -> str:
    """The fabric-side veth of a host: v<host>, or x<hash> when the name would not fit IFNAMSIZ."""
    if len(host) <= v.IFNAMSIZ - 1:
        return "v" + host
    return "x" + hashlib.sha1(host.encode()).hexdigest()[:v.IFNAMSIZ - 1]


def cidr(wanted: dict, host: str) -> str:
    return "%s/%d" % (wanted["hosts"][host], wanted["prefix"])


def underlay_mac(ip: str) -> str:
    """A fixed, locally administered MAC for an underlay address: 02:fa + the IPv4 address, or
    02:fb + a hash of the IPv6 address (VM MACs derived from VM addresses start 02:00)."""
    addr = ipaddress.ip_address(ip)
    raw = addr.packed if addr.version == 4 else hashlib.sha1(addr.packed).digest()[:4]
    return ":".join("%02x" % b for b in (b"\x02\xfa" if addr.version == 4 else b"\x02\xfb") + raw)


NUD_PERMANENT = 0x80
# IPv6 duplicate address detection: a new address is "tentative" for about a second and cannot
# be a source; a VXLAN device whose local address is tentative sends nothing (the first pings of
# an overlay converged right after lab.yml would be lost). Lab addresses are unique by
# construction, so an IPv6 lab disables DAD on the underlay device (accept_dad 0, set before
# the device goes up, so its link-local address is not tentative either) and adds the address
# with IFA_F_NODAD.
IFA_F_NODAD = 0x02
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40


def dad_key(wanted: dict) -> str:
    return "ipv6/conf/%s/accept_dad" % wanted["dev"]


def final_hosts(wanted: dict, state: dict, plan: dict) -> dict[str, str]:
    """Every host of the lab after this run -> its underlay address (kept hosts: as read)."""
    hosts = {}
    for host, entry in state["hosts"].items():
        if host in plan["remove"] or host in wanted["hosts"] or not entry.get("dev"):
            continue
        if entry["dev"]["addresses"]:
            hosts[host] = entry["dev"]["addresses"][0].split("/")[0]
    hosts.update(wanted["hosts"])
    return hosts


def wanted_neighbours(wanted: dict, everyone: dict[str, str], host: str) -> dict[str, str]:
    return {ip: underlay_mac(ip) for peer, ip in everyone.items() if peer != host}


def neighbours_differ(wanted: dict, current: dict, everyone: dict[str, str], host: str) -> bool:
    """With static_neighbours, the host's permanent underlay entries must be exactly its peers'.
    Without, they are left alone."""
    if not wanted["static_neighbours"] or not current.get("dev"):
        return False
    return current["dev"]["neighbours"] != wanted_neighbours(wanted, everyone, host)


# --- reading the machine ------------------------------------------------------------------------

@contextmanager
def ns_session(pin: str):
    """An IPRoute whose socket lives in the pinned network namespace (opened from a thread)."""
    ipr = IPRoute(fileno=lab.netlink_socket(pin))
    try:
        yield ipr
    finally:
        ipr.close()


def _link_summary(link) -> dict:
    return {
        "index": link["index"],
        "kind": link_kind(link),
        "up": link_is_up(link),
        "mtu": link.get_attr("IFLA_MTU"),
        "master": link.get_attr("IFLA_MASTER"),
        "peer": link.get_attr("IFLA_LINK"),
        "alias": link.get_attr("IFLA_IFALIAS"),
    }


def read_fabric(wanted: dict) -> dict:
    with ns_session(lab.fabric_pin(wanted["lab"])) as ipr:
        links = {link.get_attr("IFLA_IFNAME"): link for link in ipr.link("dump")}
    bridge = links.get(wanted["bridge"])
    state = {"bridge": None, "ports": {}}
    if bridge is not None:
        state["bridge"] = _link_summary(bridge)
        state["bridge"]["mcast_snooping"] = link_info_data(bridge).get("IFLA_BR_MCAST_SNOOPING")
    for name, link in links.items():
        if link_kind(link) == "veth":
            state["ports"][name] = _link_summary(link)
    return state


def read_host(wanted: dict, host: str) -> dict:
    pins = lab.host_pins(wanted["lab"], host)
    with ns_session(pins["net"]) as ipr:
        dev = get_link(ipr, wanted["dev"])
        loopback = get_link(ipr, "lo")
        state = {"dev": None, "lo_up": bool(loopback is not None and link_is_up(loopback))}
        if dev is not None:
            state["dev"] = _link_summary(dev)
            state["dev"]["mac"] = dev.get_attr("IFLA_ADDRESS")
            state["dev"]["addresses"] = addresses_of(ipr, dev["index"])
            state["dev"]["neighbours"] = permanent_neighbours(ipr, dev["index"])
            if wanted["family"] == 6:
                state["dev"]["accept_dad"] = lab.get_net_sysctl(pins["net"], dad_key(wanted))
                state["dev"]["tentative"] = any(
                    addr.get_attr("IFA_FLAGS", addr["flags"]) & (IFA_F_TENTATIVE | IFA_F_DADFAILED)
                    for addr in ipr.addr("dump", index=dev["index"]) if addr["index"] == dev["index"])
    state["hostname"] = lab.get_hostname(pins["uts"])
    return state


def permanent_neighbours(ipr, index: int) -> dict[str, str]:
    """Permanent neighbour entries of one device: address -> MAC."""
    entries = {}
    for family in (2, 10):
        for msg in ipr.neigh("dump", family=family, ifindex=index):
            if msg["ifindex"] == index and msg["state"] & NUD_PERMANENT and msg.get_attr("NDA_LLADDR"):
                entries[msg.get_attr("NDA_DST")] = msg.get_attr("NDA_LLADDR").lower()
    return entries


def read_lab(wanted: dict) -> dict:
    """What exists of the lab: its mount, the fabric, and every host directory with its pins."""
    name = wanted["lab"]
    table = lab.mounts()
    state = {
        "table": table,
        "exists": os.path.isdir(lab.lab_dir(name)),
        "mounted": lab.lab_dir(name) in table,
        "private": False,
        "fabric": None,
        "hosts": {},
    }
    if state["mounted"]:
        state["private"] = lab.is_private(lab.lab_dir(name))
    if lab.is_pinned(lab.fabric_pin(name), table):
        state["fabric"] = read_fabric(wanted)
    try:
        existing = sorted(os.listdir(lab.hosts_dir(name)))
    except (FileNotFoundError, NotADirectoryError):
        existing = []
    for host in existing:
        pins = lab.host_pins(name, host)
        entry = {"pinned": all(lab.is_pinned(path, table) for path in pins.values())}
        if entry["pinned"]:
            entry.update(read_host(wanted, host))
        state["hosts"][host] = entry
    return state


# --- comparing ----------------------------------------------------------------------------------

def host_repairs(wanted: dict, state: dict, host: str, everyone: dict[str, str]) -> list[str] | None:
    """What to fix on an existing, pinned host; None if its veth pair must be made again."""
    current = state["hosts"][host]
    fabric = state["fabric"]
    dev = current["dev"]
    port = fabric["ports"].get(port_name(host)) if fabric else None
    if dev is None or port is None or dev["kind"] != "veth" or dev["peer"] != port["index"] or port["peer"] != dev["index"]:
        return None
    fixes = []
    if dev["addresses"] != [cidr(wanted, host)] or dev.get("tentative"):
        fixes.append("underlay address")
    if wanted["family"] == 6 and dev.get("accept_dad") != "0":
        fixes.append("duplicate address detection off")
    if not dev["up"] or dev["mtu"] != wanted["mtu"] or \
            (wanted["static_neighbours"] and dev["mac"] != underlay_mac(wanted["hosts"][host])):
        fixes.append("underlay device")
    if neighbours_differ(wanted, current, everyone, host):
        fixes.append("underlay neighbours")
    if not current["lo_up"]:
        fixes.append("loopback")
    bridge = fabric["bridge"]
    if bridge is None or port["master"] != bridge["index"] or not port["up"] or port["mtu"] != wanted["mtu"] or port["alias"] != host:
        fixes.append("fabric port")
    if current["hostname"] != host:
        fixes.append("hostname")
    return fixes


def plan_present(wanted: dict, state: dict) -> dict:
    plan = {"mount": not state["mounted"], "private": state["mounted"] and not state["private"],
            "fabric": state["fabric"] is None, "bridge": [],
            "remove": [], "create": [], "replug": [], "repair": {}}
    bridge = state["fabric"]["bridge"] if state["fabric"] else None
    if bridge is None:
        plan["bridge"] = ["create"]
    else:
        if bridge["kind"] != "bridge":
            raise KernelError("%s in the fabric of lab %s is a %s, not a bridge" % (wanted["bridge"], wanted["lab"], bridge["kind"]))
        if not bridge["up"]:
            plan["bridge"].append("up")
        if bridge["mcast_snooping"] != 0:
            plan["bridge"].append("multicast snooping off")
    if wanted["exact"]:
        plan["remove"].extend(host for host in state["hosts"] if host not in wanted["hosts"])
    for host in wanted["hosts"]:
        current = state["hosts"].get(host)
        if current is None:
            plan["create"].append(host)
        elif not current["pinned"]:
            plan["remove"].append(host)
            plan["create"].append(host)
    plan["everyone"] = everyone = final_hosts(wanted, state, plan)
    for host, current in state["hosts"].items():
        if host in plan["remove"] or not current["pinned"]:
            continue
        if host in wanted["hosts"]:
            fixes = host_repairs(wanted, state, host, everyone)
            if fixes is None:
                plan["replug"].append(host)
            elif fixes:
                plan["repair"][host] = fixes
        elif neighbours_differ(wanted, current, everyone, host):
            plan["repair"][host] = ["underlay neighbours"]  # a kept host that is not listed
    return plan


def plan_absent(wanted: dict, state: dict) -> dict:
    """Remove the listed hosts; the others forget them (their permanent neighbour entries)."""
    plan = {"mount": False, "private": False, "fabric": False, "bridge": [], "create": [], "replug": [],
            "repair": {}, "remove": [host for host in wanted["hosts"] if host in state["hosts"]]}
    plan["everyone"] = everyone = {
        host: entry["dev"]["addresses"][0].split("/")[0] for host, entry in state["hosts"].items()
        if host not in plan["remove"] and entry.get("dev") and entry["dev"]["addresses"]}
    for host in everyone:
        if neighbours_differ(wanted, state["hosts"][host], everyone, host):
            plan["repair"][host] = ["underlay neighbours"]
    return plan


def host_view(state_entry: dict | None) -> str:
    if state_entry is None:
        return ""
    if not state_entry["pinned"]:
        return "(incomplete)"
    return " ".join(state_entry["dev"]["addresses"]) if state_entry["dev"] else "(no underlay device)"


def describe(wanted: dict, state: dict, plan: dict | None) -> tuple[dict, dict]:
    """The diff's before and after: the fabric bridge and each host's underlay address."""
    before = {"lab": wanted["lab"], "exists": state["exists"],
              "fabric": wanted["bridge"] if state["fabric"] and state["fabric"]["bridge"] else None,
              "hosts": {host: host_view(entry) for host, entry in state["hosts"].items()}}
    if plan is None:  # the lab is removed
        return before, {"lab": wanted["lab"], "exists": False, "fabric": None, "hosts": {}}
    hosts = {host: view for host, view in before["hosts"].items() if host not in plan["remove"]}
    hosts.update({host: cidr(wanted, host) for host in wanted["hosts"]})
    return before, {"lab": wanted["lab"], "exists": True, "fabric": wanted["bridge"], "hosts": dict(sorted(hosts.items()))}


def lab_result(wanted: dict, after: dict) -> dict:
    if not after["exists"]:
        return {}
    name = wanted["lab"]
    hosts = {}
    for host, address in after["hosts"].items():
        entry = dict(lab.host_pins(name, host))
        entry.update(underlay_dev=wanted["dev"], underlay_ip=address, fabric_port=port_name(host))
        hosts[host] = entry
    return {"name": name, "path": lab.lab_dir(name),
            "fabric": {"netns": lab.fabric_pin(name), "bridge": wanted["bridge"]}, "hosts": hosts}


# --- changing -----------------------------------------------------------------------------------

def _ignore_absent(func, *args, **kwargs) -> None:
    try:
        func(*args, **kwargs)
    except NetlinkError as exc:
        if exc.code not in ABSENT_ERRNOS:
            raise


def send_batch(pin: str, requests: list) -> None:
    """Send neighbour requests (_fastnl.Request) through the collection's one pipelined path
    (_fastnl.NeighSocket.apply: a window per sendmsg, its last request ACKed, errors matched back
    by sequence number): a 32-host lab needs ~1000 entries, one pyroute2 round trip each would
    cost ~0.3 s. The socket is opened in the host's namespace from a thread (no forked helper)."""
    if not requests:
        return
    with _fastnl.NeighSocket(fileno=lab.netlink_socket(pin)) as sock:
        failures = [(request, code) for request, code, _text in sock.apply(requests) if not _fastnl.already_gone(request, code)]
    if failures:
        code = failures[0][1]
        raise OSError(code, "neighbour entry on %s: %s" % (pin, errno.errorcode.get(code, code)))


def ensure_bridge(wanted: dict, fixes: list[str]) -> None:
    with ns_session(lab.fabric_pin(wanted["lab"])) as ipr:
        if "create" in fixes:
            ipr.link("add", ifname=wanted["bridge"], kind="bridge", br_mcast_snooping=0, br_forward_delay=0)
        else:
            if "multicast snooping off" in fixes:
                ipr.link("set", index=get_link(ipr, wanted["bridge"])["index"], kind="bridge", br_mcast_snooping=0)
        ipr.link("set", index=get_link(ipr, wanted["bridge"])["index"], state="up")


def remove_hosts(wanted: dict, hosts: list[str], table: dict) -> list[int]:
    name = wanted["lab"]
    ids = lab.ns_ids(path for host in hosts for path in lab.host_pins(name, host).values()
                     if lab.is_pinned(path, table))
    killed = lab.kill_processes(ids, wanted["kill_timeout"])
    if lab.is_pinned(lab.fabric_pin(name), table):
        # Delete the fabric ends now: a freed namespace's veths go away only when the kernel's
        # asynchronous cleanup gets to them, and a host made again at once needs the name back.
        with ns_session(lab.fabric_pin(name)) as ipr:
            for host in hosts:
                port = get_link(ipr, port_name(host))
                if port is not None:
                    _ignore_absent(ipr.link, "del", index=port["index"])
    for host in hosts:
        lab.remove_tree(lab.host_dir(name, host), table)
    return killed


def plug(wanted: dict, fabric, bridge: int, host: str, fresh: bool, everyone: dict[str, str]) -> None:
    """Make the host's veth pair in the fabric (session `fabric`), its peer created straight
    inside the host; `fresh`: the host's namespaces were just made, so nothing is left over."""
    pins = lab.host_pins(wanted["lab"], host)
    port = port_name(host)
    if not fresh:
        with ns_session(pins["net"]) as inner:
            leftover = get_link(inner, wanted["dev"])
            if leftover is not None:
                _ignore_absent(inner.link, "del", index=leftover["index"])
    leftover = get_link(fabric, port)
    if leftover is not None:
        _ignore_absent(fabric.link, "del", index=leftover["index"])
    fd = os.open(pins["net"], os.O_RDONLY)
    try:
        peer = {"ifname": wanted["dev"], "net_ns_fd": fd, "mtu": wanted["mtu"]}
        if wanted["static_neighbours"]:
            peer["address"] = underlay_mac(wanted["hosts"][host])
        fabric.link("add", ifname=port, kind="veth", mtu=wanted["mtu"], peer=peer)
    finally:
        os.close(fd)
    fabric.link("set", index=get_link(fabric, port)["index"], master=bridge, ifalias=host, state="up")
    fixes = ["underlay address", "underlay device", "loopback"]
    if wanted["family"] == 6:
        fixes.insert(0, "duplicate address detection off")
    if wanted["static_neighbours"]:
        fixes.append("underlay neighbours")
    configure_host(wanted, host, fixes, everyone)


def configure_host(wanted: dict, host: str, fixes: list[str], everyone: dict[str, str]) -> None:
    pins = lab.host_pins(wanted["lab"], host)
    with ns_session(pins["net"]) as ipr:
        dev = get_link(ipr, wanted["dev"])
        index = dev["index"]
        if "duplicate address detection off" in fixes:
            lab.set_net_sysctl(pins["net"], dad_key(wanted), "0")
        if "underlay address" in fixes:
            want = cidr(wanted, host)
            for address in addresses_of(ipr, index):
                # a tentative address (DAD was on when it was added) is added again without DAD
                if address != want or wanted["family"] == 6:
                    ip, prefix = address.rsplit("/", 1)
                    _ignore_absent(ipr.addr, "del", index=index, address=ip, prefixlen=int(prefix))
            if want not in addresses_of(ipr, index):
                extra = {"flags": IFA_F_NODAD} if wanted["family"] == 6 else {}
                ipr.addr("add", index=index, address=wanted["hosts"][host], prefixlen=wanted["prefix"], **extra)
        if "underlay device" in fixes:
            if wanted["static_neighbours"]:
                ipr.link("set", index=index, address=underlay_mac(wanted["hosts"][host]))
            ipr.link("set", index=index, mtu=wanted["mtu"], state="up")
        if "underlay neighbours" in fixes:
            want = wanted_neighbours(wanted, everyone, host)
            have = permanent_neighbours(ipr, index)
            requests = [_fastnl.neigh_request("delete", index, ip) for ip in have if ip not in want]
            requests += [_fastnl.neigh_request("replace", index, ip, mac, NUD_PERMANENT)
                         for ip, mac in want.items() if have.get(ip) != mac]
            send_batch(pins["net"], requests)
        if "loopback" in fixes:
            ipr.link("set", index=get_link(ipr, "lo")["index"], state="up")
    if "fabric port" in fixes:
        with ns_session(lab.fabric_pin(wanted["lab"])) as ipr:
            bridge = get_link(ipr, wanted["bridge"])["index"]
            port = get_link(ipr, port_name(host))["index"]
            ipr.link("set", index=port, master=bridge, ifalias=host, mtu=wanted["mtu"], state="up")
    if "hostname" in fixes:
        lab.set_hostname(pins["uts"], host)


def apply_present(wanted: dict, state: dict, plan: dict) -> list[int]:
    name = wanted["lab"]
    if plan["mount"]:
        lab.mount_private_dir(lab.lab_dir(name))
    elif plan["private"]:
        lab.make_private(lab.lab_dir(name))
    if plan["fabric"]:
        lab.create_fabric_ns(name)
    if plan["bridge"]:
        ensure_bridge(wanted, plan["bridge"])
    killed = remove_hosts(wanted, plan["remove"], lab.mounts()) if plan["remove"] else []
    created = []
    try:
        os.makedirs(lab.hosts_dir(name), mode=0o755, exist_ok=True)
        created = list(plan["create"])
        lab.create_host_namespaces(name, created)
        if created or plan["replug"]:
            with ns_session(lab.fabric_pin(name)) as fabric:
                bridge = get_link(fabric, wanted["bridge"])["index"]
                for host in created + plan["replug"]:
                    plug(wanted, fabric, bridge, host, host in created, plan["everyone"])
        for host, fixes in plan["repair"].items():
            configure_host(wanted, host, fixes, plan["everyone"])
    except (NetlinkError, OSError, lab.LabError) as exc:
        # Leave no half-made host behind: what this run created goes again.
        undo = ""
        try:
            remove_hosts(wanted, created, lab.mounts())
        except (NetlinkError, OSError, lab.LabError) as undo_exc:
            undo = "; removing the hosts this run created failed too: %s" % _message(undo_exc)
        raise KernelError("could not build lab %s: %s%s" % (name, _message(exc), undo)) from None
    return killed


def destroy(wanted: dict, state: dict) -> list[int]:
    name = wanted["lab"]
    table = state["table"]
    pins = [lab.fabric_pin(name)] + [path for host in state["hosts"] for path in lab.host_pins(name, host).values()]
    killed = lab.kill_processes(lab.ns_ids(p for p in pins if lab.is_pinned(p, table)), wanted["kill_timeout"])
    lab.remove_tree(lab.lab_dir(name), table)
    return killed


def _message(exc) -> str:
    if isinstance(exc, NetlinkError):
        return describe_netlink_error(exc)
    if isinstance(exc, lab.LabError):
        return str(exc)
    return "%s" % exc


# --- the module ---------------------------------------------------------------------------------

def manage(module) -> dict:
    wanted = validate(module.params)
    result = {"changed": False, "created": [], "removed": [], "repaired": {}, "killed": []}
    with lab.lab_lock():
        state = read_lab(wanted)
        if wanted["whole_lab"]:
            before, after = describe(wanted, state, None)
            result["changed"] = state["exists"]
            result["removed"] = sorted(state["hosts"])
            if result["changed"] and not module.check_mode:
                result["killed"] = destroy(wanted, state)
        else:
            if wanted["state"] == "absent":
                plan = plan_absent(wanted, state)
                before, after = describe(wanted, state, plan)
                after["hosts"] = {h: a for h, a in after["hosts"].items() if h not in wanted["hosts"]}
                after["exists"] = state["exists"]
                after["fabric"] = before["fabric"]
            else:
                plan = plan_present(wanted, state)
                before, after = describe(wanted, state, plan)
            result["created"] = plan["create"]
            result["removed"] = [h for h in plan["remove"] if h not in plan["create"]]
            result["repaired"] = dict(plan["repair"], **{h: ["underlay veth pair"] for h in plan["replug"]})
            result["changed"] = any((plan["mount"], plan["private"], plan["fabric"], plan["bridge"], plan["remove"],
                                     plan["create"], plan["replug"], plan["repair"]))
            if result["changed"] and not module.check_mode:
                if wanted["state"] == "absent":
                    result["killed"] = remove_hosts(wanted, plan["remove"], state["table"])
                    for host, fixes in plan["repair"].items():
                        configure_host(wanted, host, fixes, plan["everyone"])
                else:
                    result["killed"] = apply_present(wanted, state, plan)
    result["lab"] = lab_result(wanted, after)
    if module._diff:
        result["diff"] = {"before": before, "after": after}
    return result


def manage_module(module) -> dict:
    """manage(), with the lab's own errors reported as kernel errors naming the lab."""
    try:
        return manage(module)
    except lab.LabError as exc:
        raise KernelError(str(exc)) from None
    except OSError as exc:
        raise KernelError("lab %s: %s" % (module.params["lab_name"], exc)) from None


SPEC = dict(
    argument_spec=dict(
        lab_name=dict(type="str", default="ovx"),
        hosts=dict(type="list", elements="dict", options=dict(
            name=dict(type="str", required=True),
            underlay_ip=dict(type="str", required=True),
        )),
        underlay_prefix=dict(type="int", default=24),
        underlay_dev=dict(type="str", default="eth0"),
        underlay_mtu=dict(type="int", default=1500),
        fabric_bridge=dict(type="str", default="underlay0"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        exact=dict(type="bool", default=False),
        kill_timeout=dict(type="float", default=2.0),
        static_neighbours=dict(type="bool", default=True),
    ),
    supports_check_mode=True,
)
