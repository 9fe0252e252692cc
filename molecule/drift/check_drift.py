"""Converge the drift lab with h3 removed from the inventory; assert exactly the drift is reported.

Run by side_effect.yml. Exit status non-zero (and a message naming the difference) when the
converge changed anything other than what the operator broke, or missed any of it, or when a
second converge is not quiet.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

# Each role changes its host in one task (overlay_apply); what changed in it is in the diff,
# one per item, checked below.
VXLAN_TASK = ("VXLAN devices (multicast - group, learning; flood - learning; static - nolearning proxy; "
              "dove - also l2miss l3miss; evpn - nolearning) and tables")
ENDPOINT_TASK = "Bridges (brctl addbr br1; ip link set br1 up; evpn - its address), VM namespaces with their veth pairs and addresses"
# (host, task) pairs the converge must report as changed, and nothing else.
EXPECTED = {
    ("h1", VXLAN_TASK),
    ("h2", VXLAN_TASK),
    ("h2", ENDPOINT_TASK),
}
# Lines the --diff output must contain: what was removed (-) and restored (+).
EXPECTED_DIFF = [
    "-02:00:00:de:ad:01 dst 192.168.1.99",   # h1 stale fdb entry
    "-100.0.0.99 lladdr 02:00:00:de:ad:01",  # h1 stale neighbour entry
    "-02:00:64:00:00:04 dst 192.168.1.4",    # h3's VM leaves h1's and h2's tables
    "-100.0.0.4 lladdr 02:00:64:00:00:04",
    "+02:00:64:00:00:02 dst 192.168.1.2",    # h2's deleted entry is restored
]
TASK = re.compile(r"^TASK \[(?:[^:\]]+ : )?(.*)\] \*+$")
CHANGED = re.compile(r"^changed: \[(\w+)\]")


def converge(lab_name: str) -> str:
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "--diff",
           "-i", str(HERE / "inventory_without_h3"), "-e", "lab_name=%s vxlan_mode=static" % lab_name,
           str(ROOT / "molecule" / "resources" / "converge.yml")]
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if proc.returncode:
        sys.exit("converge failed (rc=%d):\n%s\n%s" % (proc.returncode, proc.stdout[-4000:], proc.stderr[-2000:]))
    return proc.stdout


def changed_tasks(output: str) -> set[tuple[str, str]]:
    result, task = set(), None
    for line in output.splitlines():
        match = TASK.match(line)
        if match:
            task = match.group(1)
            continue
        match = CHANGED.match(line)
        if match and task:
            result.add((match.group(1), task))
    return result


def main() -> None:
    lab_name = sys.argv[1]
    output = converge(lab_name)
    got = changed_tasks(output)
    problems = []
    if got != EXPECTED:
        problems.append("changed tasks differ\n  unexpected: %s\n  missing: %s" % (sorted(got - EXPECTED), sorted(EXPECTED - got)))
    lines = {line.strip() for line in output.splitlines()}
    problems += ["diff lacks %r" % want for want in EXPECTED_DIFF if want not in lines]
    again = changed_tasks(converge(lab_name))
    if again:
        problems.append("second converge not quiet: %s" % sorted(again))
    if problems:
        print(output[-6000:])
        sys.exit("\n".join(problems))
    print("drift reported exactly: %s" % ", ".join("%s/%s" % pair for pair in sorted(got)))
    print("second converge without h3: no change")


if __name__ == "__main__":
    main()
