# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The command line: run (foreground; what systemd or start-stop-daemon supervises), status,
check-config, deregister.

The agent has no supervisor of its own. `status --pidfile F` reads the pid file the
supervisor wrote (start-stop-daemon --make-pidfile on lab hosts) and counts the process only if
it still runs this agent, so a stale file whose PID was reused never reads as running.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

from overlay_vxlan_agent import LOGGER_NAME, __version__
from overlay_vxlan_agent.config import DEFAULT_CONFIG, ConfigError, load_config
from overlay_vxlan_agent.etcd_client import PermissionDenied, StoreError, make_etcd_client

LOG = logging.getLogger(LOGGER_NAME)
PACKAGE = "overlay_vxlan_agent"


def read_pid(path: str):
    """The PID in a supervisor's pid file if that process runs this agent, else None."""
    try:
        with open(path, encoding="ascii") as handle:
            pid = int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            cmdline = handle.read()
    except OSError:
        return None
    if PACKAGE.encode() not in cmdline:
        return None
    return pid


def cmd_status(args) -> int:
    try:
        config = load_config(args.config)
        metrics_file = config["metrics_file"]
    except ConfigError:
        metrics_file = DEFAULT_CONFIG["metrics_file"]
    deadline = time.monotonic() + (args.wait or 0)
    while True:
        status = {"running": None, "pid": None}
        if args.pidfile:
            status["pid"] = read_pid(args.pidfile)
            status["running"] = bool(status["pid"])
        try:
            with open(metrics_file, encoding="utf-8") as handle:
                status["metrics"] = json.load(handle)
            if not args.full:
                status["metrics"]["resolve_latency_us"].pop("recent", None)
        except (OSError, ValueError):
            status["metrics"] = None
        metrics = status["metrics"] or {}
        synced = (status["running"] is not False and metrics.get("counters", {}).get("resyncs", 0) > 0
                  and (status["pid"] is None or metrics.get("pid") == status["pid"]))
        if synced or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    print(json.dumps(status, indent=2, sort_keys=True))
    if args.wait and not synced:
        return 4
    return 0 if status["running"] is not False else 3


def cmd_deregister(args) -> int:
    """Remove this host's records from etcd (teardown); entries in kernels follow by watch."""
    config = load_config(args.config)
    if config["backend"] != "etcd":
        print(json.dumps({"changed": False}))
        return 0
    client = make_etcd_client(config)
    prefix = config["etcd"]["prefix"].rstrip("/") + "/endpoints/"
    removed, refused = [], []
    try:
        _rev, kvs = client.range_prefix(prefix)
        for key, _value, _revision in kvs:
            if key.rsplit("/", 1)[-1] == config["host"]:
                try:
                    client.delete(key)
                except PermissionDenied:
                    # etcd no longer grants this host the key (its VM moved away in the
                    # inventory): not this host's record to remove; the controller role does
                    refused.append(key)
                    continue
                removed.append(key)
    except StoreError as exc:
        print(json.dumps({"changed": bool(removed), "removed": removed, "error": str(exc)}))
        return 1
    print(json.dumps({"changed": bool(removed), "removed": removed, "refused": refused}))
    return 0


def cmd_run(args) -> int:
    config = load_config(args.config)
    logging.basicConfig(stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    LOG.setLevel(config["log_level"].upper())
    if config["metrics_file"]:
        os.makedirs(os.path.dirname(os.path.abspath(config["metrics_file"])), exist_ok=True)
    # _netlink first: it puts the collection's own pyroute2 (role overlay.vxlan.pyroute2) ahead of
    # the distribution's on this process's path, as for the modules and the boot restore.
    from ansible_collections.overlay.vxlan.plugins.module_utils import _netlink  # noqa: F401
    from overlay_vxlan_agent.daemon import Agent  # pyroute2 is only needed to run

    return Agent(config, args.config).run()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=PACKAGE, description="overlay.vxlan DOVE agent: answers l2miss / l3miss from a local cache")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "status", "check-config", "deregister"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--config", default="/etc/overlay-vxlan/agent.json")
        if name == "status":
            cmd.add_argument("--pidfile", default=None, help="the supervisor's pid file (start-stop-daemon), if any")
            cmd.add_argument("--full", action="store_true", help="include the recent latency samples")
            cmd.add_argument("--wait", type=float, default=0,
                             help="wait up to this many seconds for a running, synchronised agent (exit 4 if not)")
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "status":
            return cmd_status(args)
        if args.command == "deregister":
            return cmd_deregister(args)
        load_config(args.config)
        print(json.dumps({"valid": True}))
        return 0
    except ConfigError as exc:
        print("%s: configuration error: %s" % (PACKAGE, exc), file=sys.stderr)
        return 2
