# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""overlay.vxlan DOVE agent: answers l2miss / l3miss of VXLAN devices from a local cache.

A package of small modules by concern, deployed by the `overlay.vxlan.dove_agent` role next to
the collection's module_utils it reuses (`_validate` for MAC/IP/VNI normalisation, `_netlink`
for the "already gone" errors):

  records       endpoint records: validation (the collection's _validate), etcd keys, the file map
  cache         the in-memory cache of records, by (vni, ip) and (vni, mac)
  kernel        netlink through pyroute2: miss notifications (bind/get), dumps, table writes
  reconcile     what to change so the owned kernel entries match the cache; adoption on start
  garp          the gratuitous ARP reply that wakes a waiting VM
  metrics       counters and latency percentiles, the metrics file
  config        the configuration file: defaults and validation
  etcd_client   a small client of etcd's v3 JSON gateway (standard library)
  backends      the etcd watcher and registrar threads, the file backend
  daemon        the Agent: main loop, misses, store updates
  cli           the command line: run, status, check-config, deregister

Run it as `python3 <dir>/overlay_vxlan_agent <command> ...` (see __main__.py). Needs Python
3.9+ and pyroute2 >= 0.9.1. It never daemonises itself: systemd (real hosts) or
start-stop-daemon (lab hosts) supervises `run`.
"""

__version__ = "0.2.0"
LOGGER_NAME = "overlay-vxlan-agent"
