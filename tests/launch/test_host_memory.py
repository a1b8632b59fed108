"""run.py's re-exec with glibc's huge-page tunable: when it happens, what it keeps, how to turn it off."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from acar_jax.launch import host_memory
from tests.helpers import paths

REPO = str(paths.REPO)
SUPPORTED = host_memory.huge_page_environment({}, host_memory.glibc_version(), host_memory.thp_available()) \
    is not None
GLIBC = (2, 36)


def test_adds_the_tunable_and_keeps_the_users_other_tunables():
    assert host_memory.huge_page_environment({"A": "1"}, GLIBC, True) == {
        "A": "1", "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
    env = host_memory.huge_page_environment({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, GLIBC, True)
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"


@pytest.mark.parametrize("environ, glibc, thp", [
    ({"ACAR_JAX_HUGE_PAGES": "0"}, GLIBC, True),                    # opted out
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, GLIBC, True),    # the user's own choice stands
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}, GLIBC, True),    # already re-executed: no loop
    ({}, (2, 34), True),                                            # glibc without the tunable
    ({}, None, True),                                               # not glibc
    ({}, GLIBC, False),                                             # THP off in the kernel
])
def test_leaves_the_process_alone(environ, glibc, thp):
    assert host_memory.huge_page_environment(environ, glibc, thp) is None


@pytest.mark.parametrize("setting, available", [("always [madvise] never\n", True), ("[always] madvise never", True),
                                                ("always madvise [never]\n", False)])
def test_reads_the_kernels_thp_setting(tmp_path, setting, available):
    path = tmp_path / "enabled"
    path.write_text(setting)
    assert host_memory.thp_available(path) is available
    assert host_memory.thp_available(tmp_path / "missing") is False


def test_describe_names_the_state():
    assert host_memory.describe({"GLIBC_TUNABLES": "x=1:glibc.malloc.hugetlb=1"}) == "huge pages on"
    assert host_memory.describe({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}) == "huge pages off"
    assert host_memory.describe({}) == "huge pages off"


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", host_memory.OPT_OUT)}
    return {**env, **extra}


@pytest.mark.skipif(not SUPPORTED, reason="needs glibc >= 2.35 and transparent huge pages")
def test_reexec_keeps_interpreter_options_and_arguments(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {REPO!r})
        from acar_jax.launch.host_memory import reexec_with_huge_pages
        reexec_with_huge_pages("probe")
        print(os.environ["GLIBC_TUNABLES"], sys.flags.dont_write_bytecode, sys.argv[1:], os.getpid())
    """))
    proc = subprocess.run([sys.executable, "-B", str(probe), "a", "--b=c"], env=_clean_env(), capture_output=True,
                          text=True, timeout=120, check=True)
    tunables, no_bytecode, *rest = proc.stdout.split()
    assert tunables == "glibc.malloc.hugetlb=1" and no_bytecode == "1"
    assert " ".join(rest[:-1]) == "['a', '--b=c']"
    assert proc.stderr.count("probe: restarting with GLIBC_TUNABLES=glibc.malloc.hugetlb=1") == 1


@pytest.mark.skipif(not SUPPORTED, reason="needs glibc >= 2.35 and transparent huge pages")
@pytest.mark.parametrize("opt_out", [False, True])
def test_run_py_restarts_with_huge_pages_unless_opted_out(opt_out):
    env = _clean_env(**({host_memory.OPT_OUT: "0"} if opt_out else {}))
    proc = subprocess.run([sys.executable, os.path.join(REPO, "run.py"), "--mode=nonsense"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode != 0      # the bad flag value is still refused, after the restart
    assert ("run.py: restarting with GLIBC_TUNABLES=glibc.malloc.hugetlb=1" in proc.stderr) is not opt_out
