# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The in-memory cache of endpoint records the agent answers misses from (never the store)."""

from __future__ import annotations

from overlay_vxlan_agent.records import Endpoint, RecordError, UnservedRecord

DEFAULT_MAX_PER_VNI = 16384


class CacheFull(RecordError):
    """A new record for a VNI that already holds its cap of records."""


class EndpointCache:
    """Every valid record the backend knows, indexed by (vni, ip) and (vni, mac).

    Several records may claim the same IP or MAC during a move (the new host registered, the
    old one not yet gone); the one with the highest revision (etcd mod_revision, or position
    in the file) wins.

    Bounded: with `vnis`, a record for another VNI is never kept (UnservedRecord); at most
    `max_per_vni` records per VNI (a new one past that is refused with CacheFull; records
    already held are updated as usual), so a flood of records cannot exhaust memory.
    """

    def __init__(self, vnis=None, max_per_vni: int | None = DEFAULT_MAX_PER_VNI):
        self.vnis = None if vnis is None else frozenset(vnis)
        self.max_per_vni = max_per_vni
        self._records: dict = {}  # source key -> (Endpoint, revision)
        self._by_ip: dict = {}  # (vni, ip) -> {source key}
        self._by_mac: dict = {}  # (vni, mac) -> {source key}
        self._per_vni: dict = {}  # vni -> number of records

    def __len__(self):
        return len(self._records)

    def __contains__(self, key):
        return key in self._records

    def get(self, key):
        item = self._records.get(key)
        return item[0] if item else None

    def items(self):
        return [(key, item[0]) for key, item in self._records.items()]

    def count(self, vni: int) -> int:
        return self._per_vni.get(vni, 0)

    def put(self, key: str, endpoint: Endpoint, revision: int) -> bool:
        """Keep a record; True if what the cache answers may have changed. Raises
        UnservedRecord / CacheFull (RecordErrors) for what it must not keep; then it is unchanged."""
        old = self._records.get(key)
        if old == (endpoint, revision):
            return False
        if self.vnis is not None and endpoint.vni not in self.vnis:
            raise UnservedRecord("vni %d is not served here" % endpoint.vni)
        if (old is None or old[0].vni != endpoint.vni) and self.max_per_vni is not None \
                and self.count(endpoint.vni) >= self.max_per_vni:
            raise CacheFull("vni %d already holds %d records (max_records_per_vni)" % (endpoint.vni, self.max_per_vni))
        if old is not None:
            self._unindex(key, old[0])
        self._records[key] = (endpoint, revision)
        self._by_ip.setdefault((endpoint.vni, endpoint.ip), set()).add(key)
        self._by_mac.setdefault((endpoint.vni, endpoint.mac), set()).add(key)
        self._per_vni[endpoint.vni] = self.count(endpoint.vni) + 1
        return old is None or old[0] != endpoint

    def delete(self, key: str) -> bool:
        old = self._records.pop(key, None)
        if old is None:
            return False
        self._unindex(key, old[0])
        return True

    def replace_all(self, records: dict, refused=None) -> bool:
        """Make the cache exactly `records` ({key: (Endpoint, revision)}), but for what put()
        refuses (each reported as refused(key, error) if given); True if anything changed."""
        changed = False
        for key in [key for key in self._records if key not in records]:
            changed |= self.delete(key)
        for key, (endpoint, revision) in records.items():
            try:
                changed |= self.put(key, endpoint, revision)
            except RecordError as exc:
                changed |= self.delete(key)
                if refused is not None:
                    refused(key, exc)
        return changed

    def _unindex(self, key, endpoint):
        left = self._per_vni.get(endpoint.vni, 0) - 1
        if left > 0:
            self._per_vni[endpoint.vni] = left
        else:
            self._per_vni.pop(endpoint.vni, None)
        for index, ident in ((self._by_ip, (endpoint.vni, endpoint.ip)), (self._by_mac, (endpoint.vni, endpoint.mac))):
            keys = index.get(ident)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del index[ident]

    def _best(self, keys):
        if not keys:
            return None
        return max((self._records[key] for key in keys), key=lambda item: (item[1], item[0]))[0]

    def by_ip(self, vni: int, ip: str):
        return self._best(self._by_ip.get((vni, ip)))

    def by_mac(self, vni: int, mac: str):
        return self._best(self._by_mac.get((vni, mac)))
