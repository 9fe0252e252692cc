# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Agent: one main loop over the kernel's notifications and the backend's messages.

Answers misses from the cache (fdb entry, neighbour entry, gratuitous ARP), applies store
changes to the entries it owns, adopts the previous run's entries on start and resynchronises
after the first full load of the store. It runs in the foreground; systemd or
start-stop-daemon supervises it.
"""

from __future__ import annotations

import errno
import gc
import logging
import os
import queue
import select
import signal
import socket
import threading
import time

from overlay_vxlan_agent import LOGGER_NAME, __version__
from overlay_vxlan_agent.backends import EtcdRegistrar, EtcdWatcher, FileBackend
from overlay_vxlan_agent.cache import CacheFull, EndpointCache
from overlay_vxlan_agent.config import ConfigError, load_config
from overlay_vxlan_agent.garp import build_garp
from overlay_vxlan_agent.kernel import AF_BRIDGE, RTM_DELLINK, RTM_GETNEIGH, RTM_NEWLINK, Kernel, Miss, classify_miss, neigh_entry, read_namespace_mac
from overlay_vxlan_agent.metrics import Metrics
from overlay_vxlan_agent.reconcile import adopt_entries, plan_reconcile
from overlay_vxlan_agent.records import Endpoint, RecordError, TrustPolicy, UnservedRecord, UntrustedRecord, iter_endpoint_map, map_key, validate_record

LOG = logging.getLogger(LOGGER_NAME)
MAX_REJECTED_KEYS = 4096  # rejected keys remembered (to log each once); a flood forgets the oldest


class LogBudget:
    """At most `burst` warnings per `window` seconds; the rest are counted (the metrics have
    them all) and summed up in one line, so a flood of bad records cannot flood the journal."""

    def __init__(self, burst: int = 20, window: float = 10.0):
        self.burst, self.window = burst, window
        self.start = time.monotonic()
        self.used = 0
        self.suppressed = 0

    def tick(self, now: float):
        if now - self.start < self.window:
            return
        if self.suppressed:
            LOG.warning("%d more rejected record(s) not logged in the last %.0f s (see the records_* counters)",
                        self.suppressed, now - self.start)
        self.start, self.used, self.suppressed = now, 0, 0

    def allow(self) -> bool:
        self.tick(time.monotonic())
        if self.used < self.burst:
            self.used += 1
            return True
        self.suppressed += 1
        return False


class Agent:
    """The running agent: its cache, what it owns in the kernel, and the main loop (run())."""

    def __init__(self, config: dict, config_path: str | None = None):
        self.config = config
        self.config_path = config_path
        self.prefix = config["etcd"]["prefix"].rstrip("/")
        self.metrics = Metrics()
        self.policy = TrustPolicy.from_config(config)
        self.cache = EndpointCache(vnis=self.policy.vnis, max_per_vni=config["max_records_per_vni"])
        self.log_budget = LogBudget()
        self.owned_neigh: dict = {}
        self.owned_fdb: dict = {}
        self.interest: dict = {}  # (vni, ip) -> monotonic time last asked
        self.devices: dict = {}  # ifindex -> network dict (+ "ifindex", "bridge_index")
        self.vni_index: dict = {}  # vni -> ifindex
        self.local_vteps = {config["vtep"]}
        self.rejected: dict = {}  # source key -> (reason, revision) already logged (bounded)
        self.queue: queue.Queue = queue.Queue()
        self.stop = threading.Event()
        self.synced = False
        self.kernel = None
        self.packet = None
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.watcher = None
        self.registrar = None
        self.file_backend = None
        self.local_macs: dict = {}
        self.next_local_scan = 0.0
        self.next_device_scan = 0.0

    # --- plumbing
    def post(self, item):
        self.queue.put(item)
        try:
            os.write(self.wake_w, b"x")
        except BlockingIOError:
            pass

    def _on_signal(self, signum, _frame):
        if signum == signal.SIGHUP:
            self.post(("reload",))
        else:
            self.stop.set()
            self.post(("stop",))

    # --- devices
    def refresh_devices(self) -> bool:
        """Map the configured vxlan devices to ifindexes; True if the mapping changed."""
        links = self.kernel.links()
        by_name = {link["name"]: link for link in links}
        devices, vni_index = {}, {}
        for net in self.config["networks"]:
            link = by_name.get(net["vxlan_dev"])
            if link is None or link["kind"] != "vxlan":
                continue
            if link["local"]:
                self.local_vteps.add(link["local"])
            bridge_index = link["master"]
            if net.get("bridge") and net["bridge"] in by_name:
                bridge_index = by_name[net["bridge"]]["index"]
            devices[link["index"]] = dict(net, ifindex=link["index"], bridge_index=bridge_index)
            vni_index[net["vni"]] = link["index"]
        changed = devices != self.devices
        if changed:
            missing = [net["vxlan_dev"] for net in self.config["networks"] if net["vni"] not in vni_index]
            if missing:
                LOG.warning("vxlan device(s) not present yet: %s", ", ".join(missing))
            LOG.info("serving %s", ", ".join("%s (vni %d, ifindex %d)" % (d["vxlan_dev"], d["vni"], i)
                                             for i, d in sorted(devices.items())) or "no device")
        self.devices, self.vni_index = devices, vni_index
        return changed

    def adopt(self):
        """Take ownership of the entries already on the served devices (previous run's)."""
        ifindex_vni = {index: dev["vni"] for index, dev in self.devices.items()}
        neigh = self.kernel.neighbours(socket.AF_INET) + self.kernel.neighbours(socket.AF_INET6)
        fdb = self.kernel.neighbours(AF_BRIDGE)
        self.owned_neigh, self.owned_fdb = adopt_entries(neigh, fdb, ifindex_vni)
        now = time.monotonic()
        for key in self.owned_neigh:
            self.interest.setdefault(key, now)
        self._count_owned()
        LOG.info("adopted %d neighbour and %d fdb entries from the kernel", len(self.owned_neigh), len(self.owned_fdb))

    def _count_owned(self):
        self.metrics.owned = {"neigh": len(self.owned_neigh), "fdb": len(self.owned_fdb)}
        self.metrics.cache_size = len(self.cache)

    # --- store updates
    def _refuse(self, key, exc: RecordError, revision, what="store record"):
        """Count a record not kept; log it (rate-limited) unless this key was already logged
        for the same reason and revision. A record for a VNI not served here is no fault: debug."""
        if isinstance(exc, UnservedRecord):
            self.metrics.inc("records_unserved")
            LOG.debug("ignored %s %s: %s", what, key, exc)
            return
        counter = ("records_untrusted" if isinstance(exc, UntrustedRecord)
                   else "records_over_cap" if isinstance(exc, CacheFull) else "records_rejected")
        if self.rejected.get(key) == (str(exc), revision):
            return
        if key not in self.rejected and len(self.rejected) >= MAX_REJECTED_KEYS:
            del self.rejected[next(iter(self.rejected))]
        self.rejected[key] = (str(exc), revision)
        self.metrics.inc(counter)
        if self.log_budget.allow():
            LOG.warning("rejected %s %s: %s", what, key, exc)

    def _accept(self, key, value, revision):
        """An etcd key/value through the one door (validate_record with the trust policy)."""
        try:
            endpoint = validate_record(value, key=key, prefix=self.prefix, policy=self.policy)
        except RecordError as exc:
            self._refuse(key, exc, revision)
            return None
        self.rejected.pop(key, None)
        return endpoint

    def handle_item(self, item) -> bool:
        """Apply one backend message to the cache; True if the cache changed."""
        kind = item[0]
        if kind == "snapshot":
            for where, reason in item[2] if len(item) > 2 else ():
                self._refuse(where, RecordError(reason), 0)  # kvs the gateway garbled
            records = {}
            for key, value, revision in item[1]:
                endpoint = self._accept(key, value, revision)
                if endpoint is not None:
                    records[key] = (endpoint, revision)
            changed = self.cache.replace_all(records, refused=lambda key, exc: self._refuse(key, exc, records[key][1]))
            if not self.synced or changed:
                self.metrics.inc("resyncs")
            first = not self.synced
            self.synced = True
            self.metrics.set_store("connected")
            self._check_own_records()
            if first:
                LOG.info("store loaded: %d record(s)", len(self.cache))
            return changed or first
        if kind == "events":
            changed = False
            for event, key, value, revision in item[1]:
                if event == "DELETE":
                    changed |= self.cache.delete(key)
                    self.rejected.pop(key, None)
                    self._own_key_deleted(key)
                else:
                    endpoint = self._accept(key, value, revision)
                    if endpoint is not None:
                        try:
                            changed |= self.cache.put(key, endpoint, revision)
                            continue
                        except RecordError as exc:
                            self._refuse(key, exc, revision)
                    changed |= self.cache.delete(key)
            self.metrics.set_store("connected")
            return changed
        if kind == "store":
            self.metrics.set_store(item[1])
        return False

    def _own_key_deleted(self, key):
        if self.registrar is not None and key in self.registrar.desired:
            LOG.info("own record %s vanished from the store; registering it again", key)
            self.registrar.reassert(key)

    def _check_own_records(self):
        if self.registrar is None:
            return
        with self.registrar.lock:
            desired = list(self.registrar.desired)
        missing = [key for key in desired if key not in self.cache and key not in self.rejected]
        for key in missing:
            self.registrar.reassert(key)

    def poll_file(self) -> bool:
        data = self.file_backend.poll()
        if data is None:
            return False
        try:
            items = iter_endpoint_map(data)
        except RecordError as exc:
            self.metrics.inc("records_rejected")
            LOG.warning("rejected endpoint map %s: %s; keeping the last good one", self.file_backend.path, exc)
            return False
        records = {}
        for position, (where, item) in enumerate(items):
            try:
                endpoint = validate_record(item, policy=self.policy)
            except RecordError as exc:
                self.rejected.pop(where, None)  # each new map is logged afresh
                self._refuse(where, exc, position + 1, "endpoint map entry")
                continue
            records[map_key(endpoint)] = (endpoint, position + 1)
        changed = self.cache.replace_all(records, refused=lambda key, exc: self._refuse(
            key, exc, records[key][1], "endpoint map entry"))
        first = not self.synced
        self.synced = True
        self.metrics.set_store("loaded")
        self.metrics.inc("resyncs")
        if first:
            LOG.info("endpoint map loaded: %d record(s)", len(self.cache))
        return changed or first

    # --- local endpoints
    def scan_local(self):
        """The endpoints this host registers (MACs read from the VM namespaces when not given)."""
        endpoints = []
        for ep in self.config["local_endpoints"]:
            mac = ep["mac"]
            if mac is None:
                mac = read_namespace_mac(ep["namespace"], ep["vm_if"])
                if mac is None:
                    LOG.debug("local endpoint %s: %s in %s not found yet", ep["ip"], ep["vm_if"], ep["namespace"])
                    continue
            endpoints.append(Endpoint(ep["vni"], ep["ip"], mac.lower(), self.config["vtep"], self.config["host"]))
        return endpoints

    # --- kernel changes
    def _ifindex(self, vni):
        return self.vni_index.get(vni)

    def apply(self, ops) -> int:
        done = 0
        for op in ops:
            table, action, vni, key, value = op
            ifindex = self._ifindex(vni)
            if ifindex is None:
                continue
            try:
                if table == "fdb" and action == "replace":
                    self.kernel.fdb_replace(ifindex, key, value)
                    self.owned_fdb[(vni, key)] = value
                elif table == "neigh" and action == "replace":
                    self.kernel.neigh_replace(ifindex, key, value)
                    self.owned_neigh[(vni, key)] = value
                elif table == "neigh":
                    self.kernel.neigh_delete(ifindex, key)
                    self.owned_neigh.pop((vni, key), None)
                else:
                    self.kernel.fdb_delete(ifindex, key, value)
                    self.owned_fdb.pop((vni, key), None)
            except Exception as exc:  # noqa: BLE001 - pyroute2 raises NetlinkError or OSError; keep serving
                self.metrics.inc("kernel_errors")
                LOG.error("kernel refused %s %s vni %d %s %s: %s", action, table, vni, key, value, exc)
                continue
            done += 1
            self.metrics.inc("entries_installed" if action == "replace" else "entries_removed")
            LOG.info("%s %s vni %d %s -> %s", "set" if action == "replace" else "removed", table, vni, key, value)
        self._count_owned()
        return done

    def reconcile(self):
        if not self.synced:
            return
        now = time.monotonic()
        ttl = self.config["interest_ttl"]
        for key in [key for key, seen in self.interest.items() if now - seen > ttl and key not in self.owned_neigh]:
            del self.interest[key]
        ops = plan_reconcile(self.owned_neigh, self.owned_fdb, self.cache, self.local_vteps,
                             [key for key in self.interest if key[0] in self.vni_index])
        ops = [op for op in ops if op[2] in self.vni_index]
        if ops:
            self.apply(ops)

    # --- misses
    def handle_miss(self, miss: Miss, received: float):
        self.metrics.inc("misses_seen")
        device = self.devices[miss.ifindex]
        vni = device["vni"]
        if miss.kind == "l3":
            self.metrics.inc("misses_l3")
            endpoint = self.cache.by_ip(vni, miss.key)
        else:
            self.metrics.inc("misses_l2")
            endpoint = self.cache.by_mac(vni, miss.key)
        if endpoint is None:
            self.metrics.inc("misses_unknown")
            LOG.debug("%s miss vni %d %s: unknown", miss.kind, vni, miss.key)
            return
        if endpoint.vtep in self.local_vteps:
            self.metrics.inc("misses_local")
            LOG.debug("%s miss vni %d %s: local endpoint, not installed", miss.kind, vni, miss.key)
            return
        try:
            self.kernel.fdb_replace(miss.ifindex, endpoint.mac, endpoint.vtep)
            self.owned_fdb[(vni, endpoint.mac)] = endpoint.vtep
            if miss.kind == "l3":
                self.kernel.neigh_replace(miss.ifindex, endpoint.ip, endpoint.mac)
                self.owned_neigh[(vni, endpoint.ip)] = endpoint.mac
                self.interest[(vni, endpoint.ip)] = time.monotonic()
        except Exception as exc:  # noqa: BLE001 - NetlinkError/OSError: count, log, keep serving
            self.metrics.inc("kernel_errors")
            LOG.error("kernel refused the answer to %s miss vni %d %s: %s", miss.kind, vni, miss.key, exc)
            return
        elapsed = (time.monotonic() - received) * 1e6
        self.metrics.inc("misses_answered")
        self.metrics.latency(elapsed)
        self._count_owned()
        if miss.kind == "l3" and self.config["announce"]:
            self.announce(device, endpoint)
        LOG.debug("%s miss vni %d %s answered: %s at %s in %.0f us", miss.kind, vni, miss.key,
                  endpoint.mac, endpoint.vtep, elapsed)

    def announce(self, device, endpoint):
        """Tell the VMs on the bridge at once (they queued their packet waiting for ARP)."""
        if ":" in endpoint.ip or not device.get("bridge_index"):
            return
        try:
            if self.packet is None:
                self.packet = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            self.packet.sendto(build_garp(endpoint.mac, endpoint.ip), (self._ifname(device["bridge_index"]), 0))
            self.metrics.inc("announcements_sent")
        except OSError as exc:
            LOG.debug("announcement of %s failed: %s", endpoint.ip, exc)
            if self.packet is not None:
                self.packet.close()
                self.packet = None

    def _ifname(self, index):
        return socket.if_indextoname(index)

    def process_events(self):
        try:
            events = self.kernel.recv_events()
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                self.metrics.inc("events_lost")
                LOG.warning("netlink event queue overran; some misses were lost (VMs retransmit)")
                return
            raise
        received = time.monotonic()
        for msg_type, msg in events:
            if msg_type in (RTM_NEWLINK, RTM_DELLINK):
                self.next_device_scan = 0.0
                continue
            if msg_type != RTM_GETNEIGH:
                continue
            miss = classify_miss(msg_type, neigh_entry(msg), self.devices)
            if miss is not None:
                self.handle_miss(miss, received)

    # --- main loop
    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        self.kernel = Kernel()
        self.refresh_devices()
        self.adopt()
        backend = self.config["backend"]
        if backend == "etcd":
            self.watcher = EtcdWatcher(self.config, self.post, self.stop)
            self.registrar = EtcdRegistrar(self.config, self.stop, on_failure=self.watcher.interrupt)
            self.registrar.set_endpoints(self.scan_local())
            self.watcher.start()
            self.registrar.start()
        else:
            self.file_backend = FileBackend(self.config["file"]["path"])
        LOG.info("agent %s started: host %s, vtep %s, backend %s", __version__, self.config["host"],
                 self.config["vtep"], backend)
        poll = self.config["file"]["poll_interval"] if backend == "file" else 1.0
        next_poll = 0.0
        # pyroute2's modules and message classes are tens of thousands of long-lived objects;
        # left in the collector's generations, a full collection in the middle of a miss cost
        # 10-17 ms (benchmarks/dove_latency.py max). Frozen, the collector skips them.
        gc.freeze()
        next_metrics = 0.0
        while not self.stop.is_set():
            now = time.monotonic()
            timeout = max(0.0, min(next_poll, next_metrics, self.next_device_scan, self.next_local_scan) - now)
            readable = select.select([self.kernel.fileno(), self.wake_r], [], [], timeout)[0]
            if self.kernel.fileno() in readable:
                self.process_events()
            changed = False
            if self.wake_r in readable:
                try:
                    os.read(self.wake_r, 4096)
                except BlockingIOError:
                    pass
            while True:
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
                if item[0] == "reload":
                    self._reload()
                    changed = True
                elif item[0] != "stop":
                    changed |= self.handle_item(item)
            now = time.monotonic()
            if self.file_backend is not None and now >= next_poll:
                changed |= self.poll_file()
                next_poll = now + poll
            elif self.file_backend is None:
                next_poll = now + 3600
            if now >= self.next_device_scan:
                if self.refresh_devices():
                    self.adopt()
                    changed = True
                self.next_device_scan = now + 2.0
            if now >= self.next_local_scan:
                if self.registrar is not None:
                    self.registrar.set_endpoints(self.scan_local())
                self.next_local_scan = now + 5.0
            if changed:
                self.reconcile()
            if now >= next_metrics:
                self._write_metrics()
                next_metrics = now + self.config["metrics_interval"]
        LOG.info("agent stopping (kernel entries stay; the data plane keeps working)")
        self._write_metrics()
        self.kernel.close()
        return 0

    def _write_metrics(self):
        self.log_budget.tick(time.monotonic())
        self.metrics.cache_size = len(self.cache)
        try:
            self.metrics.write(self.config["metrics_file"])
        except OSError as exc:
            LOG.debug("metrics file: %s", exc)

    def _reload(self):
        if not self.config_path:
            return
        try:
            fresh = load_config(self.config_path)
        except ConfigError as exc:
            LOG.error("reload refused, keeping the running configuration: %s", exc)
            return
        if (fresh["backend"], _store(fresh["etcd"]), fresh["file"], fresh["networks"], fresh["host"], fresh["vtep"]) != (
                self.config["backend"], _store(self.config["etcd"]), self.config["file"], self.config["networks"],
                self.config["host"], self.config["vtep"]):
            LOG.warning("reload: only local_endpoints, inventory, announce, log_level and the etcd credentials change without a restart")
        credentials = {name: fresh["etcd"].get(name) for name in _CREDENTIALS}
        if credentials != {name: self.config["etcd"].get(name) for name in _CREDENTIALS}:
            # a new password (rotated by the controller role) or user: both threads authenticate
            # again with it at their next request
            self.config["etcd"].update(credentials)
            password = credentials["password"]
            for thread in (self.watcher, self.registrar):
                if thread is not None:
                    thread.client.set_credentials(credentials["user"], password.reveal() if password is not None else None)
            LOG.info("etcd credentials reloaded (user %s)", fresh["etcd"]["user"])
        self.config["local_endpoints"] = fresh["local_endpoints"]
        self.config["announce"] = fresh["announce"]
        if fresh["inventory"] != self.config["inventory"]:
            # A VM moved in the inventory: believe the new map, and read the store (or the
            # map file) again so records refused or kept under the old one are judged anew.
            self.config["inventory"] = fresh["inventory"]
            self.policy = TrustPolicy.from_config(self.config)
            if self.watcher is not None:
                self.watcher.interrupt()
            if self.file_backend is not None:
                self.file_backend.signature = None
            LOG.info("inventory reloaded: %d host(s), %d endpoint(s)", len(fresh["inventory"]["vteps"]),
                     len(fresh["inventory"]["endpoints"]))
        LOG.setLevel(fresh["log_level"].upper())
        if self.registrar is not None:
            self.registrar.set_endpoints(self.scan_local())
        LOG.info("configuration reloaded: %d local endpoint(s)", len(fresh["local_endpoints"]))


_CREDENTIALS = ("user", "password_file", "password")


def _store(etcd: dict) -> dict:
    """The etcd settings a reload cannot change (all but the credentials)."""
    return {name: value for name, value in etcd.items() if name not in _CREDENTIALS}
