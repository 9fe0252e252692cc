"""Documentation matches behaviour, for every module in plugins/modules.

`ansible-doc -j overlay.vxlan.<module>` must render (run at the repository root, so ansible.cfg
alone resolves the collection), and the options it documents (names, types, elements, choices,
defaults, required, aliases, suboptions, fragments included) must equal the module's
argument_spec, which is captured by running the module's main() with an AnsibleModule that
records its arguments instead of parsing any input. This is the check ansible-test sanity's
validate-modules makes; that tool itself cannot run here (it builds its own virtualenv and
downloads pip and its requirements, and this machine is offline).
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MODULES = sorted(p.stem for p in (ROOT / "plugins" / "modules").glob("*.py") if not p.name.startswith("_"))


class _Captured(Exception):
    def __init__(self, kwargs):
        super().__init__("argument_spec captured")
        self.kwargs = kwargs


class _CapturingModule:
    def __init__(self, *args, **kwargs):
        if args:
            kwargs["argument_spec"] = args[0]
        raise _Captured(kwargs)


def module_kwargs(name: str) -> dict:
    """The keyword arguments main() gives AnsibleModule (argument_spec, supports_check_mode...)."""
    module = importlib.import_module("ansible_collections.overlay.vxlan.plugins.modules.%s" % name)
    original = module.AnsibleModule
    module.AnsibleModule = _CapturingModule
    try:
        with pytest.raises(_Captured) as captured:
            module.main()
    finally:
        module.AnsibleModule = original
    return captured.value.kwargs


def ansible_doc(name: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    proc = subprocess.run([str(BIN / "ansible-doc"), "-j", "overlay.vxlan.%s" % name], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "[ERROR]" not in proc.stderr and "[WARNING]" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout)["overlay.vxlan.%s" % name]


def _norm_default(value, kind):
    if value is None:
        return None
    if kind == "bool" and isinstance(value, str):
        return value.lower() in ("yes", "true", "on", "1")
    return value


def spec_differences(documented: dict, spec: dict, path: str = "") -> list[str]:
    """Differences between documented options and an argument_spec, one readable line each."""
    problems = []
    for name in sorted(set(documented) - set(spec)):
        problems.append("%s%s: documented but not in argument_spec" % (path, name))
    for name in sorted(set(spec) - set(documented)):
        problems.append("%s%s: in argument_spec but not documented" % (path, name))
    for name in sorted(set(documented) & set(spec)):
        doc, arg, where = documented[name], spec[name], path + name
        kind_doc, kind_arg = doc.get("type", "str"), arg.get("type", "str")
        checks = {
            "type": (kind_doc, kind_arg),
            "elements": (doc.get("elements"), arg.get("elements")),
            "required": (bool(doc.get("required", False)), bool(arg.get("required", False))),
            "default": (_norm_default(doc.get("default"), kind_doc), _norm_default(arg.get("default"), kind_arg)),
            "choices": (doc.get("choices"), arg.get("choices")),
            "aliases": (sorted(doc.get("aliases") or []), sorted(arg.get("aliases") or [])),
            "no_log": (bool(doc.get("no_log", False)) if "no_log" in doc else bool(arg.get("no_log", False)), bool(arg.get("no_log", False))),
        }
        for key, (in_doc, in_spec) in checks.items():
            if in_doc != in_spec:
                problems.append("%s: %s documented %r, argument_spec %r" % (where, key, in_doc, in_spec))
        if not doc.get("description"):
            problems.append("%s: no description" % where)
        if doc.get("suboptions") or arg.get("options"):
            problems += spec_differences(doc.get("suboptions") or {}, arg.get("options") or {}, where + ".")
    return problems


def test_spec_differences_catches_mismatches():
    documented = {"a": {"type": "int", "default": 1, "description": ["x"]}, "b": {"type": "list", "elements": "dict", "description": ["y"],
                                                                              "suboptions": {"c": {"required": True, "description": ["z"]}}}}
    spec = {"a": {"type": "int", "default": 2}, "b": {"type": "list", "elements": "dict", "options": {"c": {}, "d": {"type": "bool"}}}}
    assert spec_differences(documented, spec) == [
        "a: default documented 1, argument_spec 2",
        "b.d: in argument_spec but not documented",
        "b.c: required documented True, argument_spec False",
    ]


@pytest.mark.parametrize("name", MODULES)
def test_ansible_doc_renders_and_matches_argument_spec(name):
    rendered = ansible_doc(name)
    doc = rendered["doc"]
    assert doc["module"] == name and doc["short_description"] and doc["description"]
    kwargs = module_kwargs(name)
    assert spec_differences(doc.get("options") or {}, kwargs["argument_spec"]) == []

    # check_mode documented as supported exactly when the module supports it.
    attributes = doc.get("attributes") or {}
    if "check_mode" in attributes:
        assert (attributes["check_mode"]["support"] in ("full", "partial")) == bool(kwargs.get("supports_check_mode"))
    else:
        assert not kwargs.get("supports_check_mode"), "supports check mode but does not document it"

    # Options named in mutually_exclusive / required_if exist.
    for group in kwargs.get("mutually_exclusive") or []:
        assert set(group) <= set(kwargs["argument_spec"]), group
    for rule in kwargs.get("required_if") or []:
        assert rule[0] in kwargs["argument_spec"] and set(rule[2]) <= set(kwargs["argument_spec"]), rule

    # EXAMPLES are YAML tasks calling this very module, always by its fully qualified name.
    examples = yaml.safe_load(rendered["examples"])
    assert isinstance(examples, list) and any("overlay.vxlan.%s" % name in task for task in examples), examples
    assert not [task for task in examples if name in task], "short module name used in EXAMPLES"
    assert isinstance(rendered.get("return"), dict) or rendered.get("return") is None


@pytest.mark.parametrize("name", MODULES)
def test_ansible_doc_text_renders(name):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    proc = subprocess.run([str(BIN / "ansible-doc"), "overlay.vxlan.%s" % name], cwd=ROOT, env=dict(env, PAGER="cat"),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "overlay.vxlan.%s" % name in proc.stdout, proc.stderr


def test_ruff_clean():
    ruff = shutil.which("ruff", path=str(BIN)) or shutil.which("ruff")
    assert ruff, "ruff is not installed"
    proc = subprocess.run([ruff, "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


FILTERS = sorted(p.stem for p in (ROOT / "plugins" / "filter").glob("*.yml"))


@pytest.mark.parametrize("name", FILTERS)
def test_filter_docs_render_with_their_positional_options(name):
    """Each filter's YAML documentation loads and ansible-doc renders it; the positional
    arguments it names are documented options (a stray ': ' in a description once broke one)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    proc = subprocess.run([str(BIN / "ansible-doc"), "-t", "filter", "-j", "overlay.vxlan.%s" % name], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "[WARNING]" not in proc.stderr, proc.stderr
    doc = json.loads(proc.stdout)["overlay.vxlan.%s" % name]["doc"]
    assert doc["name"] == name and doc["short_description"]
    positional = [p.strip() for p in str(doc.get("positional") or "").split(",") if p.strip()]
    assert set(positional) <= set(doc.get("options") or {}), (positional, sorted(doc.get("options") or {}))
