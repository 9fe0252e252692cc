"""The collection as an Ansible user gets it: built, installed from the tarball, documented.

- every role has a meta/argument_specs.yml that documents exactly the knobs of its
  defaults/main.yml (same types; a literal default repeated, a templated one left out), and
  Ansible refuses a bad role variable before the role does anything, with a readable message;
- every filter has a documentation file of its own;
- `ansible-galaxy collection build` makes a tarball with the collection and nothing of the
  workshop; installed into a fresh collections path, `ansible-doc` renders a module, a role and
  a filter from that copy, and ansible-builder reads its execution-environment requirements;
- the execution environment definition is accepted by `ansible-builder create`.
Nothing here touches the network or the kernel.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "defaults" / "main.yml").exists())
GALAXY = yaml.safe_load((ROOT / "galaxy.yml").read_text())
TARBALL_NAME = "%s-%s-%s.tar.gz" % (GALAXY["namespace"], GALAXY["name"], GALAXY["version"])
YAML_TYPES = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(extra)
    return env


def run(argv, cwd, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env or clean_env(), capture_output=True,
                          text=True, timeout=timeout)


# --- roles: argument specs ----------------------------------------------------------------------

@pytest.mark.parametrize("role", ROLES)
def test_role_argument_spec_documents_every_default(role):
    defaults = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text()) or {}
    spec_file = ROOT / "roles" / role / "meta" / "argument_specs.yml"
    assert spec_file.exists(), "roles/%s has no meta/argument_specs.yml" % role
    options = yaml.safe_load(spec_file.read_text())["argument_specs"]["main"]["options"]
    problems = ["%s: in defaults/main.yml, not in the argument spec" % k for k in sorted(set(defaults) - set(options))]
    for name in sorted(set(defaults) & set(options)):
        value, option = defaults[name], options[name]
        assert option.get("description"), "%s: no description" % name
        templated = isinstance(value, str) and "{{" in value
        if templated:
            if "default" in option:
                problems.append("%s: templated default %r, but the spec says default %r" % (name, value, option["default"]))
            continue
        if value is None:
            if option.get("default") is not None:
                problems.append("%s: no default, the spec says %r" % (name, option["default"]))
            continue
        kind = YAML_TYPES[type(value)]
        compatible = {("str", "path"), ("int", "float")}  # a path is a str, an int a valid float
        if option.get("type", "str") != kind and (kind, option.get("type")) not in compatible:
            problems.append("%s: default %r is a %s, the spec says type %s" % (name, value, kind, option.get("type")))
        if option.get("default") != value:
            problems.append("%s: default %r, the spec says %r" % (name, value, option.get("default")))
        if "choices" in option and value not in option["choices"]:
            problems.append("%s: default %r is not one of the choices %s" % (name, value, option["choices"]))
    assert not problems, "roles/%s/meta/argument_specs.yml:\n" % role + "\n".join(problems)


@pytest.mark.parametrize("role", ROLES)
def test_role_has_a_readme(role):
    readme = ROOT / "roles" / role / "README.md"
    assert readme.exists()
    text = readme.read_text()
    assert "overlay.vxlan.%s" % role in text and "ansible-doc -t role" in text


@pytest.mark.parametrize(("variables", "expected"), [
    ({"vxlan_mode": "bogus"}, "value of vxlan_mode must be one of: multicast, flood, static, dove, evpn, got: bogus"),
    ({"vxlan_underlay_mtu": "big"}, "vxlan_underlay_mtu"),
])
def test_bad_role_variable_is_refused_before_the_role_runs(tmp_path, variables, expected):
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "A role with a bad variable",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "vars": variables,
        "roles": [{"role": "overlay.vxlan.vxlan"}],
    }]))
    proc = run([BIN / "ansible-playbook", "-i", "localhost,", playbook], cwd=ROOT,
               env=clean_env(ANSIBLE_CONFIG=str(ROOT / "ansible.cfg")))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "Validation of arguments failed" in out and expected in out, out
    # refused by the validation task, before any task of the role
    assert "This host's share of the mesh" not in out, out


# --- filters: one documentation file each ------------------------------------------------------

def filter_names() -> list[str]:
    names = []
    for source in sorted((ROOT / "plugins" / "filter").glob("*.py")):
        module = importlib.import_module("ansible_collections.overlay.vxlan.plugins.filter.%s" % source.stem)
        names += module.FilterModule().filters()
    return sorted(names)


@pytest.mark.parametrize("name", filter_names())
def test_every_filter_has_its_own_documentation(name):
    doc_file = ROOT / "plugins" / "filter" / ("%s.yml" % name)
    assert doc_file.exists(), "plugins/filter/%s.yml is missing" % name
    assert yaml.safe_load(doc_file.read_text())["DOCUMENTATION"]["name"] == name


def test_no_filter_source_carries_a_shared_documentation_block():
    for source in (ROOT / "plugins" / "filter").glob("*.py"):
        assert "DOCUMENTATION = " not in source.read_text(), source.name


# --- the tarball, installed ----------------------------------------------------------------------

WORKSHOP = ("benchmarks/", "scripts/", "molecule/", "tests/", ".venv", ".collections", ".ci/", ".config/",
            ".git", "__pycache__", ".pytest_cache", ".ruff_cache", ".ansible/", "ansible.cfg", "ruff.toml",
            "test-requirements.txt", "execution-environment/", ".tar.gz")
SHIPPED = ("plugins/modules/vxlan_link.py", "plugins/filter/vxlan_mesh.yml", "roles/endpoint/meta/argument_specs.yml",
           "playbooks/static.yml", "site.yml", "inventories/example/hosts.yml", "docs/variables.md",
           "meta/runtime.yml", "meta/execution-environment.yml", "changelogs/changelog.yaml", "CHANGELOG.rst",
           "README.md", "LICENSE", "requirements.txt", "bindep.txt", "MANIFEST.json", "FILES.json")


@pytest.fixture(scope="module")
def tarball(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # the caches a lint or test run leaves must not end up in the tarball
    made = []
    for name in (".ruff_cache", ".pytest_cache", ".ansible", "plugins/filter/__pycache__"):
        cache = ROOT / name
        if not cache.exists():
            cache.mkdir()
            (cache / "stray").write_text("cache\n")
            made.append(cache)
    try:
        proc = run([BIN / "ansible-galaxy", "collection", "build", "--output-path", out, ROOT], cwd=ROOT)
    finally:
        for cache in made:
            shutil.rmtree(cache, ignore_errors=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out / TARBALL_NAME


def test_tarball_carries_the_collection_and_no_workshop(tarball):
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    for name in SHIPPED:
        assert name in names, "%s is not in the tarball" % name
    stray = [n for n in names if any(n.startswith(w) or ("/" + w) in ("/" + n) for w in WORKSHOP)]
    assert not stray, stray
    assert not [n for n in names if n.endswith(".pyc")]
    manifest = json.loads(tarfile.open(tarball).extractfile("MANIFEST.json").read())["collection_info"]
    assert manifest["repository"].startswith("https://github.com/") and manifest["issues"] and manifest["documentation"]
    assert manifest["license"] == ["GPL-3.0-or-later"]


@pytest.fixture(scope="module")
def installed(tarball, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("collections")
    # galaxy.yml's dependency (community.crypto) is met by the copy scripts/setup.sh installs into
    # .collections/ (offline: Galaxy is not reachable), as a user's installed collections would be
    deps = tmp_path_factory.mktemp("deps") / "ansible_collections" / "community"
    deps.mkdir(parents=True)
    crypto = ROOT / ".collections" / "ansible_collections" / "community" / "crypto"
    assert (crypto / "MANIFEST.json").exists(), "community.crypto is missing: run scripts/setup.sh"
    (deps / "crypto").symlink_to(crypto)
    env = clean_env(ANSIBLE_COLLECTIONS_PATH=str(deps.parent.parent))
    proc = run([BIN / "ansible-galaxy", "collection", "install", "-p", path, tarball], cwd=path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return path


@pytest.mark.parametrize(("kind", "name"), [("module", "vxlan_link"), ("role", "endpoint"),
                                            ("filter", "vxlan_mesh"), ("filter", "vxlan_vm_mac")])
def test_ansible_doc_renders_from_the_installed_copy(installed, kind, name):
    # run outside the repository, with the fresh path only: the installed copy answers
    env = clean_env(ANSIBLE_COLLECTIONS_PATH=str(installed))
    fqcn = "overlay.vxlan.%s" % name
    proc = run([BIN / "ansible-doc", "-t", kind, "-j", fqcn], cwd=installed, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "[WARNING]" not in proc.stderr and "[ERROR]" not in proc.stderr, proc.stderr
    doc = json.loads(proc.stdout)[fqcn]
    location = doc.get("path") or doc.get("doc", {}).get("filename") or doc.get("collection_path", "")
    assert str(installed) in json.dumps(doc), "%s was not read from %s (%s)" % (fqcn, installed, location)
    text = run([BIN / "ansible-doc", "-t", kind, fqcn], cwd=installed, env=env)
    assert text.returncode == 0 and fqcn in text.stdout, text.stderr


README_INVENTORY = """
all:
  children:
    overlay:
      vars:
        ansible_user: root
        vxlan_underlay_dev: eth0
        vxlan_networks: [{name: blue, vni: 100, bridge: br1, vxlan_dev: vxlan0, dstport: 4789}]
      hosts:
        h1: {ansible_host: 192.0.2.2, vxlan_underlay_ip: 192.0.2.2,
             vxlan_endpoints: [{network: blue, namespace: ns1, host_if: tap1, vm_if: tap2, address: 100.0.0.2/24}]}
"""


def readme_playbooks() -> list[str]:
    """The README's example playbooks for your own project (the yaml blocks that use the collection)."""
    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return [b for b in blocks if "import_playbook: overlay.vxlan." in b]


@pytest.mark.parametrize("index", range(2))
def test_readme_project_playbooks_work_with_the_installed_copy(installed, tmp_path, index):
    playbooks = readme_playbooks()
    assert len(playbooks) == 2, "the README's own-project examples changed: %d" % len(playbooks)
    (tmp_path / "hosts.yml").write_text(README_INVENTORY)
    (tmp_path / "site.yml").write_text(playbooks[index])
    env = clean_env(ANSIBLE_COLLECTIONS_PATH=str(installed))
    proc = run([BIN / "ansible-playbook", "-i", tmp_path / "hosts.yml", "--syntax-check", tmp_path / "site.yml"],
               cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listed = run([BIN / "ansible-playbook", "-i", tmp_path / "hosts.yml", "--list-tasks", tmp_path / "site.yml"],
                 cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert str(installed) not in listed.stderr and "overlay.vxlan.vxlan : " in listed.stdout, listed.stdout


def test_ansible_builder_reads_the_installed_collections_requirements(installed):
    proc = run([BIN / "ansible-builder", "introspect", "--sanitize", installed], cwd=installed)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "pyroute2" in proc.stdout and "openssh-client" in proc.stdout, proc.stdout
    # the lab-only system package comes only with bindep's "lab" profile
    assert "util-linux" not in proc.stdout or "[lab]" in proc.stdout, proc.stdout


def test_execution_environment_definition_is_accepted(tarball, tmp_path):
    ee = tmp_path / "execution-environment"
    shutil.copytree(ROOT / "execution-environment", ee, ignore=shutil.ignore_patterns("dist", "context"))
    (ee / "dist").mkdir()
    shutil.copy(tarball, ee / "dist")
    requirements = yaml.safe_load((ee / "requirements.yml").read_text())
    assert requirements["collections"][0]["name"] == "/build/dist/%s" % TARBALL_NAME
    proc = run([BIN / "ansible-builder", "create", "-f", ee / "execution-environment.yml", "-c", tmp_path / "context"],
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    containerfile = next((tmp_path / "context").glob("[CD]*file")).read_text()
    assert "ansible-galaxy collection install" in containerfile
    assert (tmp_path / "context" / "_build" / "dist" / TARBALL_NAME).exists()


def test_requirements_are_the_runtime_ones():
    runtime = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    runtime = [line for line in runtime if line]
    assert runtime == ["pyroute2>=0.9.1"]
    tools = (ROOT / "test-requirements.txt").read_text()
    for tool in ("ansible-core==", "molecule==", "ansible-lint==", "pytest==", "ruff=="):
        assert tool in tools
