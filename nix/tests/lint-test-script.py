#!/usr/bin/env python3
"""Offline lint of a NixOS test script (used by nix/ci-check.sh).

The real NixOS test driver checks the script when it builds the driver (pyflakes, mypy); this
machine cannot build it, so this runs what can be run without the driver:
  1. the script parses as Python;
  2. no undefined names: with pyflakes when it is installed, for this interpreter or as a
     pyflakes3/pyflakes program on PATH (given the same extra builtins as the driver: the
     machine names and the driver's symbols), else a simpler AST check (which does not see a
     name used before it is defined);
  3. every method called on a machine (`<machine name>.m(...)`, `<anything>.machine.m(...)` or
     `<anything>.client.m(...)`, the attributes the script keeps machines in) exists in the
     test driver's Machine API.
It cannot tell whether the test passes: that needs KVM and the real build.

Usage: lint-test-script.py SCRIPT MACHINE[,MACHINE...]
"""

import ast
import builtins
import os
import re
import shutil
import subprocess
import sys

# Driver.test_symbols() in nixos/lib/test-driver (nixos-26.05).
DRIVER_SYMBOLS = {
    "start_all",
    "test_script",
    "machines_qemu",
    "machines_nspawn",
    "vlans",
    "driver",
    "log",
    "os",
    "create_machine",
    "subtest",
    "run_tests",
    "join_all",
    "retry",
    "serial_stdout_off",
    "serial_stdout_on",
    "polling_condition",
    "BaseMachine",
    "t",
    "debug",
}

# Public methods and attributes of BaseMachine / QemuMachine in nixos/lib/test-driver.
MACHINE_API = {
    "name",
    "log",
    "log_serial",
    "nested",
    "is_up",
    "start",
    "wait_for_shutdown",
    "systemctl",
    "wait_for_unit",
    "get_unit_info",
    "get_unit_property",
    "require_unit_state",
    "succeed",
    "fail",
    "wait_until_succeeds",
    "wait_until_fails",
    "sleep",
    "wait_for_file",
    "wait_for_open_port",
    "wait_for_open_unix_socket",
    "wait_for_closed_port",
    "start_job",
    "stop_job",
    "execute",
    "copy_from_machine",
    "copy_from_host",
    "copy_from_host_via_shell",
    "send_monitor_command",
    "get_tty_text",
    "wait_until_tty_matches",
    "dump_tty_contents",
    "shell_interact",
    "console_interact",
    "wait_for_qmp_event",
    "send_chars",
    "connect",
    "screenshot",
    "get_screen_text_variants",
    "get_screen_text",
    "wait_for_text",
    "wait_for_console_text",
    "get_console_log",
    "send_key",
    "send_console",
    "shutdown",
    "crash",
    "reboot",
    "wait_for_x",
    "get_window_names",
    "wait_for_window",
    "forward_port",
    "block",
    "unblock",
    "release",
    "switch_root",
}


# Attributes that hold a machine in the script: a member's VM, a service's client VM.
MACHINE_ATTRIBUTES = {"machine", "client"}


def pythonize(name: str) -> str:
    return re.sub(r"^[^A-Za-z_]|[^A-Za-z0-9_]", "_", name)


def bound_names(tree: ast.AST) -> set[str]:
    """Every name the script binds anywhere (scopes are not told apart: a looser check)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
    return names


def undefined_names(tree: ast.AST, extra: set[str]) -> list[str]:
    known = bound_names(tree) | extra | set(dir(builtins))
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in known:
            problems.append(f"line {node.lineno}: undefined name {node.id!r}")
    return problems


def machine_api_misuse(tree: ast.AST, machines: set[str]) -> list[str]:
    problems = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        target = node.value
        on_machine = (isinstance(target, ast.Name) and target.id in machines) or (
            isinstance(target, ast.Attribute) and target.attr in MACHINE_ATTRIBUTES
        )
        if on_machine and node.attr not in MACHINE_API:
            problems.append(f"line {node.lineno}: the test driver's machines have no {node.attr!r}")
    return problems


def pyflakes_command() -> list[str] | None:
    """How to run pyflakes: with this interpreter if it has the module, else a pyflakes program
    on PATH (Debian's python3-pyflakes installs pyflakes3 for the system python3, which need not
    be the python3 running this); None when there is neither."""
    try:
        import pyflakes  # noqa: F401

        return [sys.executable, "-m", "pyflakes"]
    except ImportError:
        pass
    for program in ("pyflakes3", "pyflakes"):
        found = shutil.which(program)
        if found:
            return [found]
    return None


def pyflakes_problems(path: str, extra: set[str]) -> list[str] | None:
    """pyflakes' findings, or None when pyflakes is not installed."""
    command = pyflakes_command()
    if command is None:
        return None
    env = dict(os.environ, PYFLAKES_BUILTINS=",".join(sorted(extra)))
    done = subprocess.run(command + [path], env=env, capture_output=True, text=True)
    if done.returncode == 0:
        return []
    return (done.stdout + done.stderr).strip().splitlines() or [f"pyflakes exited with {done.returncode}"]


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    path, machine_list = sys.argv[1], sys.argv[2]
    machines = {pythonize(m) for m in machine_list.split(",") if m}
    if not machines:
        print("no machine names given", file=sys.stderr)
        return 2
    with open(path, encoding="utf-8") as script:
        source = script.read()
    if not source.strip():
        print(f"{path}: the test script is empty")
        return 1
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as error:
        print(f"{path}: line {error.lineno}: {error.msg}")
        return 1

    extra = machines | DRIVER_SYMBOLS | {"vlan1"}
    flakes = pyflakes_problems(path, extra)
    problems = (flakes if flakes is not None else undefined_names(tree, extra)) + machine_api_misuse(
        tree, machines
    )
    checker = "pyflakes" if flakes is not None else "AST name check (pyflakes not installed)"
    for problem in problems:
        print(f"{path}: {problem}")
    if problems:
        return 1
    print(f"{path}: parses; {checker} clean; machine calls use the driver's API ({len(machines)} machines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
