# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The in-memory cache of endpoint records the agent answers misses from (never the store)."""

from __future__ import annotations

from overlay_vxlan_agent.records import Endpoint


class EndpointCache:
    """Every valid record the backend knows, indexed by (vni, ip) and (vni, mac).

    Several records may claim the same IP or MAC during a move (the new host registered, the
    old one not yet gone); the one with the highest revision (etcd mod_revision, or position
    in the file) wins.
    """

    def __init__(self):
        self._records: dict = {}  # source key -> (Endpoint, revision)
        self._by_ip: dict = {}  # (vni, ip) -> {source key}
        self._by_mac: dict = {}  # (vni, mac) -> {source key}

    def __len__(self):
        return len(self._records)

    def __contains__(self, key):
        return key in self._records

    def get(self, key):
        item = self._records.get(key)
        return item[0] if item else None

    def items(self):
        return [(key, item[0]) for key, item in self._records.items()]

    def put(self, key: str, endpoint: Endpoint, revision: int) -> bool:
        old = self._records.get(key)
        if old == (endpoint, revision):
            return False
        if old is not None:
            self._unindex(key, old[0])
        self._records[key] = (endpoint, revision)
        self._by_ip.setdefault((endpoint.vni, endpoint.ip), set()).add(key)
        self._by_mac.setdefault((endpoint.vni, endpoint.mac), set()).add(key)
        return old is None or old[0] != endpoint

    def delete(self, key: str) -> bool:
        old = self._records.pop(key, None)
        if old is None:
            return False
        self._unindex(key, old[0])
        return True

    def replace_all(self, records: dict) -> bool:
        """Make the cache exactly `records` ({key: (Endpoint, revision)}); True if anything changed."""
        changed = False
        for key in [key for key in self._records if key not in records]:
            changed |= self.delete(key)
        for key, (endpoint, revision) in records.items():
            changed |= self.put(key, endpoint, revision)
        return changed

    def _unindex(self, key, endpoint):
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
