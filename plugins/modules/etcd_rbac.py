#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: etcd_rbac
version_added: 0.2.0
short_description: etcd authentication and one role per DOVE host (used by role overlay.vxlan.controller)
description:
  - Keeps etcd's role-based access control for the DOVE records
    (C(<prefix>/endpoints/<vni>/<ip>/<host>), written by each host's agent under its lease).
    Talks to etcd with C(etcdctl) (gRPC) as the user C(root), authenticated by the client
    certificate O(cert) whose common name is C(root) (etcd maps it to the user when
    C(--client-cert-auth) is on); C(root) has no password.
  - With O(auth=true), every host of O(users) gets a user of that name with a password and exactly
    one role, C(<role_prefix><name>), which may read every key under O(prefix) and write only the
    exact keys of that host's own endpoints (the records' layout has no per-host prefix, so the keys
    are derived from the inventory, one per endpoint). Roles of that prefix that no host needs any
    more are deleted with their users (a retired host), and with O(prune_records) every record no
    user may write any more is deleted (a retired host's, or one a VM moved away from). Then
    authentication is enabled.
  - With O(auth=false), authentication is disabled if it is on; users and roles are left alone.
  - etcd's JSON gateway (the agents' transport) never maps a certificate to a user and, once
    authentication is on, refuses requests whose client certificate has a common name, so the
    agents authenticate with their user's password and send the token.
options:
  endpoints:
    description: Client URLs of the cluster (https).
    type: list
    elements: str
    required: true
  ca_cert:
    description: The CA that signed the members' client-facing certificates (a path on the host).
    type: path
    required: true
  cert:
    description: The root user's client certificate (common name C(root)), a path on the host.
    type: path
    required: true
  key:
    description: The key of O(cert), a path on the host.
    type: path
    required: true
  auth:
    description: Authentication and the per-host roles on (V(true)) or authentication off (V(false)).
    type: bool
    default: true
  prefix:
    description: The agents' key prefix (C(dove_agent_etcd_prefix)).
    type: str
    default: /overlay-vxlan
  users:
    description: One item per DOVE host (the overlay group), with the endpoints its agent registers.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The host's name in its records (C(dove_agent_host)); also its etcd user.
        type: str
        required: true
      password:
        description:
          - The user's password (the agent authenticates with it). Checked against etcd when
            authentication is on, set when it does not match.
          - Empty - no password is set (check mode before the password file exists).
        type: str
        default: ""
      endpoints:
        description: The host's endpoints; each gives one writable key.
        type: list
        elements: dict
        default: []
        suboptions:
          vni:
            description: The network's VNI.
            type: int
            required: true
          ip:
            description: The endpoint's IP address (normalised as the agent writes it).
            type: str
            required: true
  role_prefix:
    description: Prefix of the roles this module owns (one per host).
    type: str
    default: overlay-vxlan-host-
  prune_records:
    description: Delete the records under C(<prefix>/endpoints/) that no user may write.
    type: bool
    default: true
  etcdctl:
    description: The etcdctl program (Debian package C(etcd-client)).
    type: path
    default: /usr/bin/etcdctl
  timeout:
    description: Seconds to wait for the cluster to answer (members still starting). In check mode it is asked once.
    type: int
    default: 30
attributes:
  check_mode:
    support: full
    description: Reads etcd and reports what it would change; changes nothing.
  diff_mode:
    support: full
    description: Authentication, the managed users with their roles, the roles with their permissions, the records to delete.
  idempotent:
    support: full
    description: A second run changes nothing (passwords are checked by authenticating, not set again).
requirements:
  - etcdctl 3.4 or later on the host (Debian C(etcd-client))
author:
  - overlay.vxlan contributors (@overlay-vxlan)
"""

EXAMPLES = r"""
- name: Authentication and one role per DOVE host
  overlay.vxlan.etcd_rbac:
    endpoints: [https://192.168.1.10:2379]
    ca_cert: /etc/etcd/pki/ca.pem
    cert: /etc/etcd/pki/root.pem
    key: /etc/etcd/pki/root-key.pem
    users:
      - {name: h1, password: "{{ h1_password }}", endpoints: [{vni: 100, ip: 100.0.0.2}]}
      - {name: h2, password: "{{ h2_password }}", endpoints: [{vni: 100, ip: 100.0.0.3}]}
"""

RETURN = r"""
actions:
  description: What was done (or, in check mode, would be done), one line each; no passwords.
  type: list
  elements: str
  returned: always
auth_enabled:
  description: Whether authentication is on after the run (in check mode, would be).
  type: bool
  returned: always
roles:
  description: The managed roles after the run, each with its permissions (C(read [start, end\)), C(readwrite key)).
  type: dict
  returned: always
"""

import base64
import json
import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.overlay.vxlan.plugins.module_utils import _validate

# etcd's permission types (authpb.Permission.Type); -w json leaves READ (0) out
PERM_NAMES = {0: "read", 1: "write", 2: "readwrite"}


class EtcdctlError(Exception):
    pass


def range_end(prefix: str) -> str:
    """etcd's range end for "every key starting with prefix" (text prefixes only)."""
    raw = bytearray(prefix.encode("utf-8"))
    while raw and raw[-1] == 0xFF:
        raw.pop()
    raw[-1] += 1
    return raw.decode("utf-8")


def record_key(prefix: str, vni: int, ip: str, host: str) -> str:
    """The key an agent writes: <prefix>/endpoints/<vni>/<ip>/<host> (as records.record_key)."""
    return "%s/endpoints/%d/%s/%s" % (prefix.rstrip("/"), vni, ip, host)


def perm_text(perm: tuple) -> str:
    kind, key, end = perm
    return "%s %s" % (kind, key) if end is None else "%s [%s, %s)" % (kind, key, end)


def wanted_roles(prefix: str, users: list, role_prefix: str) -> dict:
    """{role: {(type, key, range_end or None)}}: read on the prefix, readwrite on the host's keys."""
    base = prefix.rstrip("/") + "/"
    roles = {}
    for user in users:
        perms = {("read", base, range_end(base))}
        for endpoint in user["endpoints"]:
            vni = _validate.vni("vni", endpoint["vni"])
            ip = _validate.unicast_ip("ip", endpoint["ip"])
            perms.add(("readwrite", record_key(prefix, vni, ip, user["name"]), None))
        roles[role_prefix + user["name"]] = perms
    return roles


class Etcdctl:
    """etcdctl as the root user (client certificate CN root)."""

    def __init__(self, module, params):
        self.module = module
        self.argv = [params["etcdctl"], "--endpoints", ",".join(params["endpoints"]), "--cacert", params["ca_cert"],
                     "--cert", params["cert"], "--key", params["key"], "--dial-timeout", "3s", "--command-timeout", "10s"]

    def run(self, *args, user=None, password=None, stdin=None):
        # Through AnsibleModule.run_command (no shell, the module's own logging rules). Settings an
        # operator exported (ETCDCTL_*) must not change whom this authenticates as: this module
        # process's environment loses them once, then each call sets what it needs.
        for name in [name for name in os.environ if name.startswith("ETCDCTL_")]:
            del os.environ[name]
        env = {"ETCDCTL_API": "3"}
        if user is not None:
            # credentials by environment, never on a command line other processes can read
            env["ETCDCTL_USER"] = user
            env["ETCDCTL_PASSWORD"] = password or ""
        rc, out, err = self.module.run_command(self.argv + list(args), data=stdin, binary_data=True, environ_update=env,
                                               check_rc=False)
        return rc, out, err

    def must(self, *args, stdin=None):
        rc, out, err = self.run(*args, stdin=stdin)
        if rc != 0:
            raise EtcdctlError("etcdctl %s: %s" % (" ".join(a for a in args if a != "--interactive=false"), _last_error(err)))
        return out

    def json(self, *args):
        return json.loads(self.must(*args, "-w", "json"))

    def auth_enabled(self) -> bool:
        """Authenticating as a user that does not exist: 'not enabled' or 'authentication failed'."""
        rc, _out, err = self.run("get", "/", "--keys-only", "--limit", "1", user="overlay-vxlan-auth-probe", password="-")
        if "authentication is not enabled" in err and rc == 0:
            return False
        if "authentication failed" in err or "invalid user" in err:
            return True
        raise EtcdctlError("cannot tell whether authentication is on: %s" % _last_error(err))

    def password_ok(self, user: str, password: str) -> bool:
        rc, _out, err = self.run("get", "/", "--keys-only", "--limit", "1", user=user, password=password)
        if "authentication failed" in err or "invalid user" in err or "no password user" in err:
            return False
        if rc != 0 and "permission denied" not in err:
            raise EtcdctlError("etcdctl get as %s: %s" % (user, _last_error(err)))
        return True

    def user_roles(self, name):
        rc, out, err = self.run("user", "get", name, "-w", "json")
        if rc != 0:
            if "user name not found" in err:
                return None
            raise EtcdctlError("etcdctl user get %s: %s" % (name, _last_error(err)))
        return sorted(json.loads(out).get("roles") or [])

    def role_perms(self, name) -> set:
        perms = set()
        for perm in self.json("role", "get", name).get("perm") or []:
            key = _unb64(perm.get("key"))
            end = _unb64(perm["range_end"]) if perm.get("range_end") else None
            perms.add((PERM_NAMES[int(perm.get("permType", 0))], key, end))
        return perms

    def keys_under(self, prefix: str) -> list:
        data = self.json("get", prefix, "--prefix", "--keys-only")
        return sorted(_unb64(kv["key"]) for kv in data.get("kvs") or [])


def _unb64(text) -> str:
    return base64.b64decode(text or "").decode("utf-8", "replace")


def _last_error(err: str) -> str:
    lines = [line for line in (err or "").strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("Error:"):
            return line[len("Error:"):].strip()
    return lines[-1] if lines else "no output"


def read_state(ctl: Etcdctl, params, wanted_users: list) -> dict:
    role_prefix = params["role_prefix"]
    auth = ctl.auth_enabled()
    roles = {}
    for name in ctl.json("role", "list").get("roles") or []:
        if name.startswith(role_prefix):
            roles[name] = ctl.role_perms(name)
    names = {"root"} | {u["name"] for u in wanted_users} | {r[len(role_prefix):] for r in roles}
    users = {}
    listed = set(ctl.json("user", "list").get("users") or [])
    for name in sorted(names & listed):
        users[name] = ctl.user_roles(name)
    return {"auth": auth, "roles": roles, "users": users}


def plan(ctl: Etcdctl | None, params, current: dict) -> tuple[list, dict]:
    """The steps (description, argv for etcdctl, stdin) that make etcd as wanted, and the state after."""
    steps = []
    users = params["users"]
    role_prefix = params["role_prefix"]
    after = {"auth": current["auth"], "users": dict(current["users"]), "roles": dict(current["roles"]), "deleted_records": []}
    if not params["auth"]:
        if current["auth"]:
            steps.append(("disable authentication", ["auth", "disable"], None))
            after["auth"] = False
        return steps, after

    wanted = wanted_roles(params["prefix"], users, role_prefix)
    root_roles = current["users"].get("root")
    if root_roles is None:
        steps.append(("add user root (no password: its certificate's CN authenticates it)", ["user", "add", "root", "--no-password"], None))
        root_roles = []
    if "root" not in root_roles:
        steps.append(("grant role root to user root", ["user", "grant-role", "root", "root"], None))
    after["users"]["root"] = sorted(set(root_roles) | {"root"})

    for role, perms in sorted(wanted.items()):
        have = current["roles"].get(role)
        if have is None:
            steps.append(("add role %s" % role, ["role", "add", role], None))
            have = set()
        for perm in sorted(have - perms, key=str):
            # a grant with the same key and range replaces the type; revoke only what is gone
            if not any(p[1:] == perm[1:] for p in perms):
                steps.append(("role %s: revoke %s" % (role, perm_text(perm)), ["role", "revoke-permission", role, perm[1]]
                              + ([perm[2]] if perm[2] is not None else []), None))
        for perm in sorted(perms - have, key=str):
            steps.append(("role %s: grant %s" % (role, perm_text(perm)), ["role", "grant-permission", role, perm[0], perm[1]]
                          + ([perm[2]] if perm[2] is not None else []), None))
        after["roles"][role] = perms

    for user in users:
        name, role = user["name"], role_prefix + user["name"]
        roles = current["users"].get(name)
        if roles is None:
            if user["password"]:
                steps.append(("add user %s" % name, ["user", "add", name, "--interactive=false"], user["password"] + "\n"))
            else:
                steps.append(("add user %s (its password is made in this run)" % name, None, None))
            roles = []
        elif user["password"] and not (current["auth"] and ctl is not None and ctl.password_ok(name, user["password"])):
            steps.append(("set the password of user %s" % name, ["user", "passwd", name, "--interactive=false"], user["password"] + "\n"))
        for other in sorted(set(roles) - {role}):
            steps.append(("user %s: revoke role %s" % (name, other), ["user", "revoke-role", name, other], None))
        if role not in roles:
            steps.append(("grant role %s to user %s" % (role, name), ["user", "grant-role", name, role], None))
        after["users"][name] = [role]

    # a retired host: its role, and its user if that role was all it had
    for role in sorted(set(current["roles"]) - set(wanted)):
        name = role[len(role_prefix):]
        if current["users"].get(name) is not None and set(current["users"][name]) <= {role}:
            steps.append(("delete user %s (no longer a DOVE host)" % name, ["user", "delete", name], None))
            after["users"].pop(name, None)
        steps.append(("delete role %s" % role, ["role", "delete", role], None))
        after["roles"].pop(role, None)

    if params["prune_records"] and ctl is not None:
        writable = {perm[1] for perms in wanted.values() for perm in perms if perm[2] is None}
        for key in ctl.keys_under(params["prefix"].rstrip("/") + "/endpoints/"):
            if key not in writable:
                steps.append(("delete record %s (no host may write it)" % key, ["del", key], None))
                after["deleted_records"].append(key)

    if not current["auth"]:
        steps.append(("enable authentication", ["auth", "enable"], None))
        after["auth"] = True
    return steps, after


def _view(state: dict) -> dict:
    return {"auth_enabled": state["auth"],
            "users": {name: roles for name, roles in sorted(state["users"].items()) if roles is not None},
            "roles": {name: sorted(perm_text(p) for p in perms) for name, perms in sorted(state["roles"].items())}}


def main():
    module = AnsibleModule(
        argument_spec={
            "endpoints": {"type": "list", "elements": "str", "required": True},
            "ca_cert": {"type": "path", "required": True},
            "cert": {"type": "path", "required": True},
            "key": {"type": "path", "required": True, "no_log": False},
            "auth": {"type": "bool", "default": True},
            "prefix": {"type": "str", "default": "/overlay-vxlan"},
            "users": {"type": "list", "elements": "dict", "default": [], "options": {
                "name": {"type": "str", "required": True},
                "password": {"type": "str", "default": "", "no_log": True},
                "endpoints": {"type": "list", "elements": "dict", "default": [], "options": {
                    "vni": {"type": "int", "required": True},
                    "ip": {"type": "str", "required": True}}}}},
            "role_prefix": {"type": "str", "default": "overlay-vxlan-host-"},
            "prune_records": {"type": "bool", "default": True},
            "etcdctl": {"type": "path", "default": "/usr/bin/etcdctl"},
            "timeout": {"type": "int", "default": 30},
        },
        supports_check_mode=True,
    )
    params = module.params
    names = [u["name"] for u in params["users"]]
    bad = sorted({n for n in names if names.count(n) > 1} | {n for n in names if n == "root" or ":" in n or not n.strip()})
    if bad:
        module.fail_json(msg="etcd_rbac: users %s: a DOVE host's user must be unique, not root, without ':'" % ", ".join(bad))
    try:
        wanted_roles(params["prefix"], params["users"], params["role_prefix"])
    except _validate.InputError as exc:
        module.fail_json(msg="etcd_rbac: %s" % exc.msg)
    if not os.path.exists(params["etcdctl"]):
        if module.check_mode:
            module.exit_json(changed=True, actions=["etcdctl is not installed yet: everything would be set up"],
                             auth_enabled=params["auth"], roles={})
        module.fail_json(msg="etcd_rbac: %s not found (Debian package etcd-client)" % params["etcdctl"])

    ctl = Etcdctl(module, params)
    # check mode on hosts where etcd was never started: one attempt, no waiting
    deadline = time.monotonic() + (0 if module.check_mode else params["timeout"])
    while True:
        try:
            current = read_state(ctl, params, params["users"])
            break
        except EtcdctlError as exc:
            if time.monotonic() >= deadline:
                if module.check_mode:
                    module.exit_json(changed=True, actions=["etcd does not answer yet (%s): everything would be set up" % exc],
                                     auth_enabled=params["auth"], roles={})
                module.fail_json(msg="etcd_rbac: etcd at %s does not answer as root: %s" % (", ".join(params["endpoints"]), exc))
            time.sleep(1)

    try:
        steps, after = plan(ctl, params, current)
        if not module.check_mode:
            for description, argv, stdin in steps:
                if argv is None:
                    module.fail_json(msg="etcd_rbac: %s: no password given" % description)
                ctl.must(*argv, stdin=stdin)
    except EtcdctlError as exc:
        module.fail_json(msg="etcd_rbac: %s" % exc)
    before_view, after_view = _view(current), _view(after)
    before_view["records_to_delete"] = after["deleted_records"]
    after_view["records_to_delete"] = []
    module.exit_json(changed=bool(steps), actions=[s[0] for s in steps], auth_enabled=after["auth"],
                     roles=after_view["roles"], diff={"before": before_view, "after": after_view})


if __name__ == "__main__":
    main()
