# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where the records come from: the etcd watcher and registrar threads, and the file backend."""

from __future__ import annotations

import json
import logging
import os
import threading
import time

from overlay_vxlan_agent import LOGGER_NAME
from overlay_vxlan_agent.etcd_client import AuthFailed, LeaseLost, PermissionDenied, StoreError, make_etcd_client
from overlay_vxlan_agent.records import record_key, record_value

LOG = logging.getLogger(LOGGER_NAME)
# etcd refused this host's credentials or a request (not the store being down): wait this long
# before asking again, since only a controller run (a new grant, a new password) changes the answer.
REFUSED_WAIT = 5.0
# A put of one of this host's records that etcd refuses (the inventory moved the VM here, the
# controller role has not granted the key yet) is tried again after this many seconds.
REFUSED_PUT_RETRY = 30.0


class QuietRetry:
    """Logs the first failure of a kind at warning, repeats at debug, and recovery at info."""

    def __init__(self, what: str):
        self.what = what
        self.failing = False
        self.failures = 0

    def failed(self, exc):
        self.failures += 1
        if not self.failing:
            LOG.warning("%s: %s; retrying quietly", self.what, exc)
            self.failing = True
        else:
            LOG.debug("%s still failing (%d): %s", self.what, self.failures, exc)

    def ok(self):
        if self.failing:
            LOG.info("%s: recovered after %d failed attempt(s)", self.what, self.failures)
        self.failing = False
        self.failures = 0


class EtcdWatcher(threading.Thread):
    """Loads every record under the prefix, then follows the watch; resyncs after any break."""

    def __init__(self, config, post, stop):
        super().__init__(name="etcd-watch", daemon=True)
        self.config = config
        self.prefix = config["etcd"]["prefix"].rstrip("/") + "/endpoints/"
        self.post = post
        self.stop = stop
        self.client = make_etcd_client(config)
        self.retry = QuietRetry("etcd watch")

    def interrupt(self):
        """Break the current watch stream (another thread noticed the store is gone)."""
        self.client.close_watch()

    def run(self):
        backoff = 0.2
        while not self.stop.is_set():
            try:
                garbled: list = []
                revision, kvs = self.client.range_prefix(self.prefix, garbled)
                self.post(("snapshot", kvs, garbled))
                self.retry.ok()
                backoff = 0.2
                for batch in self.client.watch(self.prefix, revision + 1, self.stop):
                    self.post(("events", batch))
                if not self.stop.is_set():
                    LOG.debug("etcd watch stream ended; resynchronising")
            except (AuthFailed, PermissionDenied) as exc:
                # refused, not unreachable: the same member answers the same until the
                # controller role changes something, and each new try may cost a password check
                self.post(("store", "down"))
                self.retry.failed(exc)
                self.client.close()
                self.stop.wait(REFUSED_WAIT)
            except StoreError as exc:
                self.post(("store", "down"))
                self.retry.failed(exc)
                self.client.close()
                self.client.current = (self.client.current + 1) % len(self.client.endpoints)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)


class EtcdRegistrar(threading.Thread):
    """Keeps this host's records in etcd under a lease, and the lease alive."""

    def __init__(self, config, stop, on_failure=None):
        super().__init__(name="etcd-lease", daemon=True)
        self.config = config
        self.prefix = config["etcd"]["prefix"]
        self.ttl = config["etcd"]["lease_ttl"]
        self.stop = stop
        self.client = make_etcd_client(config)
        self.lock = threading.Lock()
        self.kick = threading.Event()
        self.desired: dict = {}  # key -> value
        self.registered: dict = {}  # key -> value, under self.lease
        self.lease = 0
        self.on_failure = on_failure
        self.retry = QuietRetry("etcd registration")
        self.refused: dict = {}  # key -> (value, monotonic time to try again): puts etcd refused

    def set_endpoints(self, endpoints):
        desired = {record_key(self.prefix, ep): record_value(ep) for ep in endpoints}
        with self.lock:
            changed = desired != self.desired
            self.desired = desired
        if changed:
            self.kick.set()

    def reassert(self, key=None):
        """A registered key vanished from the store (seen on the watch): put it again."""
        with self.lock:
            if key is None:
                self.registered = {}
            else:
                self.registered.pop(key, None)
        self.kick.set()

    def run(self):
        interval = max(self.ttl / 3.0, 0.5)
        next_keepalive = 0.0
        while not self.stop.is_set():
            try:
                if not self.lease:
                    self.lease = self.client.grant(self.ttl)
                    with self.lock:
                        self.registered = {}
                    LOG.info("etcd lease %x granted (ttl %ds)", self.lease, self.ttl)
                    next_keepalive = time.monotonic() + interval
                elif time.monotonic() >= next_keepalive:
                    self.client.keepalive(self.lease)
                    next_keepalive = time.monotonic() + interval
                with self.lock:
                    desired = dict(self.desired)
                    registered = dict(self.registered)
                for key in [key for key in self.refused if key not in desired]:
                    del self.refused[key]
                for key in sorted(set(registered) - set(desired)):
                    self._deregister(key)
                for key, value in sorted(desired.items()):
                    if registered.get(key) != value:
                        self._register(key, value)
                self.retry.ok()
                wait = max(0.05, next_keepalive - time.monotonic())
            except LeaseLost as exc:
                LOG.warning("etcd lease lost (%s); registering again", exc)
                self.lease = 0
                wait = 0.05
            except (AuthFailed, PermissionDenied) as exc:
                # etcd is there but refuses us: the watch (on_failure) is not broken for that
                self.retry.failed(exc)
                self.client.close()
                wait = REFUSED_WAIT
            except StoreError as exc:
                self.retry.failed(exc)
                self.client.close()
                self.client.current = (self.client.current + 1) % len(self.client.endpoints)
                if self.on_failure is not None:
                    self.on_failure()
                wait = min(interval, 1.0)
            self.kick.wait(wait)
            self.kick.clear()

    def _deregister(self, key):
        """Delete one of this host's records it no longer has. Refused (permission denied): the
        controller role no longer grants this host the key (the VM moved away in the inventory)
        and removes such records itself; the key is not ours any more, so that is done."""
        try:
            self.client.delete(key)
            LOG.info("deregistered %s", key)
        except PermissionDenied as exc:
            LOG.warning("deregistering %s: etcd refuses (%s); the key is no longer this host's, leaving it to the controller", key, exc)
        with self.lock:
            self.registered.pop(key, None)
        self.refused.pop(key, None)

    def _register(self, key, value):
        """Put one of this host's records under the lease. Refused (permission denied): logged
        once, the other records go on, and this one is tried again after REFUSED_PUT_RETRY."""
        refused = self.refused.get(key)
        if refused is not None and refused[0] == value and time.monotonic() < refused[1]:
            return
        try:
            self.client.put(key, value, self.lease)
        except PermissionDenied as exc:
            if refused is None or refused[0] != value:
                LOG.warning("registering %s: etcd refuses (%s); trying again every %ds", key, exc, REFUSED_PUT_RETRY)
            self.refused[key] = (value, time.monotonic() + REFUSED_PUT_RETRY)
            return
        if refused is not None:
            LOG.info("registered %s (etcd refused it before)", key)
            del self.refused[key]
        else:
            LOG.info("registered %s", key)
        with self.lock:
            self.registered[key] = value


class FileBackend:
    """Reads the endpoint map the inventory rendered; polled for changes (inode, size, mtime).
    A map over MAX_MAP_BYTES or that JSON cannot parse (RecursionError included) is refused as a
    whole and the last good one stays; its entries go through the daemon's record validation."""

    MAX_MAP_BYTES = 64 * 1024 * 1024

    def __init__(self, path: str):
        self.path = path
        self.signature = None
        self.retry = QuietRetry("endpoint map %s" % path)

    def poll(self):
        """None if unchanged or unreadable (the last good map stays), else the parsed JSON."""
        try:
            info = os.stat(self.path)
        except OSError as exc:
            self.retry.failed(exc.strerror)
            return None
        signature = (info.st_ino, info.st_size, info.st_mtime_ns)
        if signature == self.signature:
            return None
        try:
            if info.st_size > self.MAX_MAP_BYTES:
                raise ValueError("over %d bytes" % self.MAX_MAP_BYTES)
            with open(self.path, encoding="utf-8") as handle:
                data = json.loads(handle.read(self.MAX_MAP_BYTES + 1))
        except (OSError, ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            self.retry.failed("%s: %s" % (type(exc).__name__, str(exc)[:200]))
            self.signature = signature  # do not re-read a broken file until it changes
            return None
        self.signature = signature
        self.retry.ok()
        return data


# ---------------------------------------------------------------------------------------------
# kernel side
