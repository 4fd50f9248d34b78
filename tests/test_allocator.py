"""The command line starts its work with glibc's per-thread cache of small blocks off
(`cli.control.restart_with_tuned_allocator`), once, keeping a user's own GLIBC_TUNABLES."""

import os
import subprocess
import sys

import pytest

from scenelab.cli import control

glibc_only = pytest.mark.skipif(not control._glibc(), reason="glibc's tunables: Linux with glibc")

# Prints the environment variable, then runs `scenelab runs DIR` as the process's own command.
PROBE = (
    "import os, sys; print('tunables', repr(os.environ.get('GLIBC_TUNABLES')), flush=True); "
    "sys.argv = ['scenelab', 'runs', sys.argv[1]]; from scenelab.cli import main; "
    "raise SystemExit(main())"
)


def test_the_environment_adds_the_setting_only_where_none_is_set(monkeypatch):
    monkeypatch.setattr(control, "_glibc", lambda: True)
    environ = {"PATH": "/bin"}
    assert control.allocator_environment(environ) == {
        "PATH": "/bin",
        "GLIBC_TUNABLES": "glibc.malloc.tcache_count=0",
    }
    assert environ == {"PATH": "/bin"}  # the caller's mapping is not changed
    assert control.allocator_environment({"GLIBC_TUNABLES": ""}) is None  # the user's choice
    assert control.allocator_environment({"GLIBC_TUNABLES": "glibc.malloc.mxfast=0"}) is None
    monkeypatch.setattr(control, "_glibc", lambda: False)  # musl, macOS, Windows: nothing
    assert control.allocator_environment({"PATH": "/bin"}) is None


def _probe(tmp_path, **env):
    environ = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"} | env
    return subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path)],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
    )


@glibc_only
def test_a_command_restarts_once_with_the_cache_off_and_the_same_arguments(tmp_path):
    (tmp_path / "20260101-000000-a").mkdir()  # a folder `runs` reads: not a run, no table
    done = _probe(tmp_path)
    lines = [line for line in done.stdout.splitlines() if line.startswith("tunables")]
    assert lines == ["tunables None", "tunables 'glibc.malloc.tcache_count=0'"], done.stdout
    assert "Traceback" not in done.stderr


@glibc_only
def test_a_users_own_tunables_are_kept_and_nothing_restarts(tmp_path):
    done = _probe(tmp_path, GLIBC_TUNABLES="glibc.malloc.mxfast=0")
    lines = [line for line in done.stdout.splitlines() if line.startswith("tunables")]
    assert lines == ["tunables 'glibc.malloc.mxfast=0'"], done.stdout
