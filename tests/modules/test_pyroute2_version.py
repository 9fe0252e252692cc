"""Every module checks the pyroute2 it finds before it does anything: Debian 12's own
python3-pyroute2 (0.7.2) imports fine but has no IPRoute(netns=...), and used to fail with a raw
TypeError deep inside. The message names host, version found, version needed and the fix."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from _assertions import OLD_PYROUTE2, assert_old_pyroute2_reported
from helpers import COLLECTIONS

MODULES = {
    "linux_bridge": {"name": "br1"},
    "netns_veth": {"namespace": "ns1", "name": "tap1", "peer": "tap2"},
    "vxlan_link": {"name": "vxlan0", "vni": 100},
    "bridge_fdb": {"dev": "vxlan0", "entries": []},
    "ip_neigh": {"dev": "vxlan0", "entries": []},
    "overlay_info": {},
    "overlay_plan": {},
}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_old_pyroute2_named_with_version_and_fix(module):
    assert_old_pyroute2_reported(module, MODULES[module])


# --- The collection's own pyroute2, for the collection's processes only ------------------------
# On a host whose Python has none or an older one, role pyroute2 unpacks the controller's into
# /usr/local/lib/overlay-vxlan/python. No .pth file puts it on the path of every program: the
# modules, the boot restore and the DOVE agent put it there themselves (_netlink.py). Shown with
# the machine's own /usr/bin/python3 (Debian's), in a mount namespace of its own where a tmpfs over
# /usr/local/lib holds that directory (a copy of the real pyroute2) and, in /usr/local/lib's site
# directory, a pyroute2 0.7.2 standing in for Debian's: nothing outside that namespace sees either.

SYSTEM_PYTHON = "/usr/bin/python3"
SHOW = "import pyroute2; print(pyroute2.__version__, pyroute2.__file__)"
# How the modules and the boot restore import it: _netlink first (then _links, which imports
# pyroute2's netns itself), the collection's module_utils from the controller's copy.
SHOW_OURS = ("import sys; sys.path.insert(0, %r)\n"
             "from ansible_collections.overlay.vxlan.plugins.module_utils import _links, _netlink\n"
             "print(_netlink.pyroute2.__version__, _netlink.pyroute2.__file__, _links.pyroute2_netns.__file__)")


def in_own_mount_namespace(script: str, env: dict | None = None) -> list[str]:
    """Lines printed by `script` (bash), run in a private mount namespace with the tmpfs above."""
    import pyroute2

    real, old = shlex.quote(os.path.dirname(pyroute2.__file__)), shlex.quote(OLD_PYROUTE2)
    setup = f"""set -e
mount -t tmpfs overlay-vxlan-test /usr/local/lib
mkdir -p /usr/local/lib/overlay-vxlan/python /usr/local/lib/python3.11/dist-packages
cp -r {real} /usr/local/lib/overlay-vxlan/python/
printf '%s' {old} > /usr/local/lib/python3.11/dist-packages/pyroute2.py
"""
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", setup + script],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ, **(env or {})))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


@pytest.mark.skipif(not os.path.exists(SYSTEM_PYTHON) or sys.version_info[:2] != (3, 11), reason="Debian 12's /usr/bin/python3")
def test_the_collections_pyroute2_is_for_the_collections_processes_only(tmp_path):
    check_copy = tmp_path / "check-python"  # the role's check-mode copy, given by PYTHONPATH
    (check_copy / "pyroute2").mkdir(parents=True)
    (check_copy / "pyroute2" / "__init__.py").write_text(OLD_PYROUTE2.replace("0.7.2", "0.9.99"))
    ours = SHOW_OURS % str(COLLECTIONS)
    lines = in_own_mount_namespace(
        "{py} -c {show}\n{py} -c {ours}\nenv -u PYTHONPATH {py} -c {ours}\nPYTHONPATH={check} {py} -c {show_check}\n".format(
            py=SYSTEM_PYTHON, show=shlex.quote(SHOW), ours=shlex.quote(ours), check=shlex.quote(str(check_copy)),
            show_check=shlex.quote(ours.replace(", _links.pyroute2_netns.__file__", ""))),
        env={"PYTHONPATH": ""})
    # Every other program: the distribution's (here its stand-in), as if the collection were not there.
    assert lines[0] == "0.7.2 /usr/local/lib/python3.11/dist-packages/pyroute2.py", lines
    # The collection's processes: their own, ahead of the site directory, for _links' import too.
    for line in lines[1:3]:
        version, init, netns_file = line.split()
        assert version.startswith("0.9.") and init == "/usr/local/lib/overlay-vxlan/python/pyroute2/__init__.py", lines
        assert netns_file.startswith("/usr/local/lib/overlay-vxlan/python/pyroute2/netns/"), lines
    # PYTHONPATH still comes first (the role's check-mode copy under /run).
    assert lines[3] == "0.9.99 %s" % (check_copy / "pyroute2" / "__init__.py"), lines


def test_the_role_and_the_modules_name_the_same_directory():
    from ansible_collections.overlay.vxlan.plugins.module_utils import _netlink

    role = Path(__file__).resolve().parents[2] / "roles" / "pyroute2"
    assert yaml.safe_load((role / "vars" / "main.yml").read_text())["__pyroute2_private_dir"] == _netlink.PRIVATE_PYROUTE2_DIR
    assert yaml.safe_load((role / "defaults" / "main.yml").read_text())["pyroute2_install_dir"] == _netlink.PRIVATE_PYROUTE2_DIR


@pytest.mark.parametrize("path, expected", [
    (["/z.zip", "/pp", "/usr/lib/python3.11", "/usr/local/lib/python3.11/dist-packages", "/usr/lib/python3/dist-packages"],
     ["/z.zip", "/pp", "/usr/lib/python3.11", "PRIVATE", "/usr/local/lib/python3.11/dist-packages", "/usr/lib/python3/dist-packages"]),
    (["", "/usr/lib/python3.11", "/v/lib/python3.11/site-packages/"], ["", "/usr/lib/python3.11", "PRIVATE", "/v/lib/python3.11/site-packages/"]),
    (["/usr/lib/python3.11"], ["/usr/lib/python3.11", "PRIVATE"]),  # python -S: no site directory
    (["PRIVATE", "/usr/lib/python3/dist-packages"], ["PRIVATE", "/usr/lib/python3/dist-packages"]),  # there already
])
def test_private_directory_goes_just_before_the_site_directories(tmp_path, path, expected):
    from ansible_collections.overlay.vxlan.plugins.module_utils import _netlink

    private = str(tmp_path)
    there_already = "PRIVATE" in path
    path = [private if entry == "PRIVATE" else entry for entry in path]
    assert _netlink.private_pyroute2_first(private, path) is not there_already
    assert path == [private if entry == "PRIVATE" else entry for entry in expected]
    missing = list(expected)
    assert _netlink.private_pyroute2_first(str(tmp_path / "none"), missing) is False and missing == expected
