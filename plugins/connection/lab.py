# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
name: lab
short_description: Lab only - run tasks inside a host of the overlay.vxlan simulated lab
version_added: 0.1.0
description:
  - B(Lab only.) Part of the collection's test and demonstration lab (with M(overlay.vxlan.lab_host)
    and the C(overlay.vxlan.lab) role); production hosts are reached over SSH as usual.
  - Runs commands inside a lab host made by M(overlay.vxlan.lab_host) (C(playbooks/lab.yml)),
    as C(nsenter --net=PIN/net --mount=PIN/mnt --uts=PIN/uts -- /bin/sh -c CMD) with
    C(PIN=/run/overlay-lab/<lab_name>/hosts/<lab_host>). The task sees the host's network stack
    (C(eth0) on the underlay), its hostname and its private C(/run/netns), so
    C(ip netns add ns1) on one lab host never collides with C(ns1) on another.
  - Pipelining is supported and on by default, so a module runs as one C(nsenter) process with
    no file transfer.
  - Files are copied by C(cat) run inside the host's mount namespace. A lab host shares the
    machine's file system except for what is mounted in its own mount namespace (its
    C(/run/netns) tmpfs, and anything a task mounts there later), which a plain copy from the
    controller's namespace would miss.
  - "Why not C(community.docker.nsenter): it enters the namespaces of a running process
    (C(nsenter --target PID) with the IPC, mount, network, PID and UTS namespaces), defaults to
    PID 1 to reach a container's host, and has no pipelining. A lab host is a set of namespace
    files pinned by bind mounts with no process in them, so there is no PID to target, it must
    not enter a PID or IPC namespace it does not have, and the target is chosen by lab and host
    name. Our plugin enters exactly the pinned net, mount and UTS namespaces."
author:
  - overlay.vxlan contributors (@overlay-vxlan)
options:
  lab_name:
    description: Name of the lab the host belongs to (the directory under C(/run/overlay-lab)).
    type: str
    default: ovx
    vars:
      - name: lab_name
      - name: ansible_lab_name
    env:
      - name: OVERLAY_LAB_NAME
  lab_host:
    description: Name of the lab host to enter; by default the inventory name.
    type: str
    vars:
      - name: inventory_hostname
      - name: ansible_lab_host
  nsenter_path:
    description: The C(nsenter) program (util-linux), a name looked up in C(PATH) or a full path.
    type: str
    default: nsenter
    vars:
      - name: ansible_lab_nsenter_path
  pipelining:
    description:
      - Run modules by feeding them to the interpreter's standard input (no temporary files).
      - On by default; C(become) with a password prompt turns it off for that task.
    type: boolean
    default: true
    env:
      - name: ANSIBLE_PIPELINING
    ini:
      - section: defaults
        key: pipelining
      - section: connection
        key: pipelining
    vars:
      - name: ansible_pipelining
  become_success_timeout:
    description: Seconds to wait for C(become) to succeed (values below 1 mean 10).
    type: int
    default: 10
    vars:
      - name: ansible_lab_become_success_timeout
  become_strip_preamble:
    description: Strip the internal C(become) output that precedes a command's output.
    type: bool
    default: true
    vars:
      - name: ansible_lab_become_strip_preamble
notes:
  - Runs on the controller as root (entering namespaces needs C(CAP_SYS_ADMIN)); the remote
    user is ignored. C(become) is not needed in the lab.
  - The host must exist; create it with C(ansible-playbook playbooks/lab.yml).
seealso:
  - module: overlay.vxlan.lab_host
"""

EXAMPLES = r"""
# inventories/lab/group_vars/lab.yml
# ansible_connection: overlay.vxlan.lab
# ansible_python_interpreter: "{{ ansible_playbook_python }}"
# lab_name: ovx

# ansible -i inventories/lab lab -m ansible.builtin.command -a hostname
# ansible -i inventories/lab h1 -m ansible.builtin.command -a "ip -br addr" -e lab_name=t1234
"""

import os
import shutil
import subprocess

import ansible.constants as C
from ansible.errors import AnsibleConnectionFailure, AnsibleError, AnsibleFileNotFound
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.plugins.connection.local import Connection as LocalConnection
from ansible.utils.display import Display

from ansible_collections.overlay.vxlan.plugins.module_utils import _lab

display = Display()


class Connection(LocalConnection):
    """A lab host: its pinned network, mount and UTS namespaces, entered with nsenter."""

    transport = "overlay.vxlan.lab"
    has_pipelining = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._nsenter = None
        self._pins = None

    def _connect(self):
        if self._connected:
            return self
        lab_name = self.get_option("lab_name")
        host = self.get_option("lab_host") or self._play_context.remote_addr
        if not _lab.valid_name(lab_name or "") or not _lab.valid_name(host or ""):
            raise AnsibleConnectionFailure("invalid lab name %r or lab host %r" % (lab_name, host))
        self._pins = _lab.host_pins(lab_name, host)
        nsfs = os.stat("/proc/self/ns/net").st_dev
        for kind, path in self._pins.items():
            try:
                pinned = os.stat(path).st_dev == nsfs
            except OSError:
                pinned = False
            if not pinned:
                raise AnsibleConnectionFailure(
                    "lab host %s of lab %s does not exist (%s is not a pinned %s namespace); "
                    "create it with: ansible-playbook playbooks/lab.yml -e lab_name=%s" % (host, lab_name, path, kind, lab_name)
                )
        self._nsenter = shutil.which(self.get_option("nsenter_path"))
        if not self._nsenter:
            raise AnsibleConnectionFailure("nsenter (util-linux) not found: %s" % self.get_option("nsenter_path"))
        self._play_context.remote_user = self.default_user
        display.vvv("ESTABLISH LAB CONNECTION TO %s IN LAB %s" % (host, lab_name), host=self._play_context.remote_addr)
        self._connected = True
        return self

    def _enter(self, kinds=_lab.NS_KINDS) -> list[str]:
        option = {"net": "--net", "mnt": "--mount", "uts": "--uts"}
        return [self._nsenter] + ["%s=%s" % (option[kind], self._pins[kind]) for kind in kinds] + ["--"]

    def exec_command(self, cmd, in_data=None, sudoable=True):
        """Run `cmd` with the configured shell inside the lab host."""
        super(LocalConnection, self).exec_command(cmd, in_data=in_data, sudoable=sudoable)

        executable = C.DEFAULT_EXECUTABLE.split()[0] if C.DEFAULT_EXECUTABLE else "/bin/sh"
        argv = self._enter() + [executable, "-c", to_text(cmd, errors="surrogate_or_strict")]
        display.vvv("EXEC %s" % to_text(cmd), host=self._play_context.remote_addr)

        become_prompt = sudoable and self.become and self.become.expect_prompt() and not self.get_option("pipelining")
        pty_primary = None
        stdin = subprocess.PIPE
        if become_prompt:
            import pty

            try:
                pty_primary, stdin = pty.openpty()
            except OSError as exc:
                display.debug("Unable to open pty: %s" % exc)

        proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if pty_primary is not None:
            os.close(stdin)
        become_out, become_err = self._ensure_become_success(proc, pty_primary, sudoable)
        stdout, stderr = proc.communicate(in_data)
        if pty_primary is not None:
            os.close(pty_primary)
        return proc.returncode, become_out + stdout, become_err + stderr

    def put_file(self, in_path, out_path):
        """Copy a controller file into the host with `cat` run in the host's mount namespace."""
        super(LocalConnection, self).put_file(in_path, out_path)
        display.vvv("PUT %s TO %s" % (in_path, out_path), host=self._play_context.remote_addr)
        if not os.path.exists(to_bytes(in_path, errors="surrogate_or_strict")):
            raise AnsibleFileNotFound("file or module does not exist: %s" % in_path)
        argv = self._enter(("mnt",)) + ["/bin/sh", "-c", 'cat > "$1"', "sh", out_path]
        with open(to_bytes(in_path, errors="surrogate_or_strict"), "rb") as source:
            proc = subprocess.run(argv, stdin=source, capture_output=True, check=False)
        if proc.returncode != 0:
            raise AnsibleError("failed to transfer file to %s: %s" % (out_path, to_text(proc.stderr).strip()))

    def fetch_file(self, in_path, out_path):
        """Copy a file out of the host with `cat` run in the host's mount namespace."""
        super(LocalConnection, self).fetch_file(in_path, out_path)
        display.vvv("FETCH %s TO %s" % (in_path, out_path), host=self._play_context.remote_addr)
        argv = self._enter(("mnt",)) + ["cat", "--", in_path]
        with open(to_bytes(out_path, errors="surrogate_or_strict"), "wb") as target:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=target, stderr=subprocess.PIPE, check=False)
        if proc.returncode != 0:
            raise AnsibleError("failed to fetch %s: %s" % (in_path, to_text(proc.stderr).strip()))

    def reset(self):
        self.close()

    def close(self):
        self._connected = False
