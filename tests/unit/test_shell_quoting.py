"""Every value a role or playbook puts into a command line is quoted for the shell.

A name from the inventory or a role variable (a host, a bridge, a namespace, a path) that reaches
`ansible.builtin.shell` or `ansible.builtin.command` unquoted is split at its blanks, and in a
shell runs whatever `$(...)`, `;` or a backquote in it says. So each `{{ ... }}` in the command
string (and in a shell script rendered from a role template) ends in `| quote` (or is a number,
`| int`), or the task uses `argv`, which needs no quoting. Read from the files, no Ansible run.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import jinja2
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMMAND_MODULES = {"ansible.builtin.shell", "ansible.builtin.command", "shell", "command"}
EXPRESSION = re.compile(r"{{(.*?)}}", re.S)
# A whole script rendered from a role template: checked as a file of its own (below).
TEMPLATE_SCRIPT = re.compile(r"^\s*lookup\('ansible\.builtin\.template', '([^']+)'\)\s*$")
# Variables that are command-line fragments built already quoted (checked below too).
PREQUOTED = {"__dove_agent_status_args": ROOT / "roles" / "dove_agent" / "vars" / "main.yml"}


def unquoted(text: str) -> list[str]:
    """The `{{ ... }}` expressions of a command string that are neither quoted nor numbers."""
    bad = []
    for expr in (e.strip() for e in EXPRESSION.findall(text)):
        if re.search(r"\|\s*(quote|int)\s*$", expr) or expr in PREQUOTED:
            continue
        bad.append(expr)
    return bad


def tasks_of(items):
    for task in items or []:
        if not isinstance(task, dict):
            continue
        yield task
        for key in ("block", "rescue", "always", "tasks", "pre_tasks", "post_tasks", "handlers"):
            yield from tasks_of(task.get(key))


def command_strings(path: Path):
    """(task name, command string) of every shell/command task in a task or playbook file."""
    for task in tasks_of(yaml.safe_load(path.read_text())):
        for module in COMMAND_MODULES & set(task):
            args = task[module]
            if isinstance(args, dict):
                if "cmd" in args:
                    yield task.get("name"), str(args["cmd"])
            elif args is not None:
                yield task.get("name"), str(args)
        for module in ("ansible.builtin.template", "ansible.builtin.copy"):
            if isinstance(task.get(module), dict) and "validate" in task[module]:
                yield task.get("name"), str(task[module]["validate"])


FILES = sorted([*ROOT.glob("roles/*/tasks/*.yml"), *ROOT.glob("playbooks/*.yml")])


def prequoted_fragment_splits_back() -> None:
    """__dove_agent_status_args, rendered with paths a shell would split or run: the shell's own
    split gives back exactly the options and the paths."""
    value = yaml.safe_load(PREQUOTED["__dove_agent_status_args"].read_text())["__dove_agent_status_args"]
    env = jinja2.Environment()
    env.filters["quote"] = shlex.quote
    config, pidfile = "/etc/o v/agent.json;$(id)", "/run/a `b`/agent.pid"
    for supervisor, expected in (("process", ["--config", config, "--pidfile", pidfile]), ("systemd", ["--config", config])):
        rendered = env.from_string(value).render(__dove_agent_config=config, __dove_agent_pidfile=pidfile,
                                                 __dove_agent_supervisor=supervisor)
        assert shlex.split(rendered) == expected, rendered


def test_every_value_in_a_command_line_is_quoted():
    # The check itself: it sees an unquoted value, the files and their commands.
    assert unquoted("ping -I {{ net.bridge }} {{ vm.ip | quote }} -c {{ n | int }} {{ (a ~ b) | quote }}") == ["net.bridge"]
    found = {(str(p.relative_to(ROOT)), name) for p in FILES for name, _cmd in command_strings(p)}
    assert len(found) > 20 and ("roles/verify/tasks/main.yml", "Ping every VM of the same network from each local VM") in found
    prequoted_fragment_splits_back()

    problems = []
    for path in FILES:
        for name, command in command_strings(path):
            for expr in unquoted(command):
                script = TEMPLATE_SCRIPT.match(expr)
                if script:
                    template = path.parent.parent / "templates" / script.group(1)
                    problems += ["%s: %s (script %s): {{ %s }}" % (path.relative_to(ROOT), name, template.name, inner)
                                 for inner in unquoted(template.read_text())]
                else:
                    problems.append("%s: %s: {{ %s }}" % (path.relative_to(ROOT), name, expr))
    assert problems == [], "unquoted in a command line:\n" + "\n".join(problems)
