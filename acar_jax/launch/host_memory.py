"""Transparent huge pages for the host's malloc, asked for by re-executing the entry point once.

Why: XLA:CPU allocates each execution's buffers through malloc, so a train step touches gigabytes of freshly
mapped 4 KiB pages (page faults, TLB misses). glibc (>= 2.35) backs its allocations with transparent huge pages
when `GLIBC_TUNABLES` holds `glibc.malloc.hugetlb=1`; glibc reads that variable only when a process starts,
hence the re-exec. Measured on a 2-core CPU (docs/performance.md, "Host memory: huge pages"): the default job's
train step 359 ms without, 234 ms with; the R50 ACAR step ~4.0 s without, 3.2 s with. On GPU/TPU hosts it only
changes how host memory is mapped.
`ACAR_JAX_HUGE_PAGES=0` turns it off; a `glibc.malloc.hugetlb` already in `GLIBC_TUNABLES` is left as it is.
Imports only the standard library: it runs before jax is imported.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

TUNABLE = "glibc.malloc.hugetlb"
OPT_OUT = "ACAR_JAX_HUGE_PAGES"   # "0" keeps the process as started
MIN_GLIBC = (2, 35)               # the first glibc with the hugetlb tunable
THP_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def glibc_version() -> tuple[int, int] | None:
    """(major, minor) of the C library when it is glibc, else None (musl, macOS, Windows)."""
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()
        major, minor = version.split(".")[:2]
        return (int(major), int(minor)) if name == "glibc" else None
    except (AttributeError, OSError, ValueError):
        return None


def thp_available(setting: Path = THP_SETTING) -> bool:
    """False when the kernel has transparent huge pages off ("[never]") or unknown (no such file)."""
    try:
        return "[never]" not in setting.read_text()
    except OSError:
        return False


def huge_page_environment(environ: Mapping[str, str], glibc: tuple[int, int] | None,
                          thp: bool) -> dict[str, str] | None:
    """The environment to re-execute with, or None when the process should stay as it is: opted out, the
    tunable already set (by the user, or by this process's own first execution), glibc older than 2.35 or
    absent, or no transparent huge pages in the kernel."""
    tunables = environ.get("GLIBC_TUNABLES", "")
    if (environ.get(OPT_OUT, "1") == "0" or TUNABLE in tunables or glibc is None or glibc < MIN_GLIBC
            or not thp):
        return None
    return {**environ, "GLIBC_TUNABLES": ":".join(filter(None, (tunables, f"{TUNABLE}=1")))}


def describe(environ: Mapping[str, str] = os.environ) -> str:
    """For benchmark headers: whether this process's malloc asks for huge pages (timings depend on it)."""
    tunables = environ.get("GLIBC_TUNABLES", "")
    return f"huge pages {'on' if f'{TUNABLE}=1' in tunables.split(':') else 'off'}"


def reexec_with_huge_pages(program: str) -> None:
    """Re-executes this Python process (same interpreter, options and arguments, same PID) with glibc's
    huge-page tunable when `huge_page_environment` says so; returns only when it does not. Call it first thing
    in an entry point, before anything starts threads or opens files."""
    environ = huge_page_environment(os.environ, glibc_version(), thp_available())
    if environ is None or not sys.executable:
        return
    print(f"{program}: restarting with GLIBC_TUNABLES={environ['GLIBC_TUNABLES']} (transparent huge pages for "
          f"XLA's host buffers; {OPT_OUT}=0 turns this off)", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os.execve(sys.executable, list(sys.orig_argv), environ)
