"""Shared by the benchmark scripts: run a child process and measure it, find the data, describe the machine.

A child is measured with ``os.wait4``, which returns the resource usage of
exactly that child (and the descendants it waited for): ``ru_maxrss`` is its
own peak RSS, not the maximum over every child so far as
``getrusage(RUSAGE_CHILDREN)`` would give.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PYTHON = sys.executable
NNRUN = str(Path(sys.executable).parent / "nnrun")


@dataclass
class Child:
    """One finished child process."""

    args: list[str]
    returncode: int
    wall_s: float
    peak_rss_mb: float
    stdout: str
    stderr: str


def run_child(args: list[str], *, env: dict[str, str] | None = None, cwd: Path = ROOT) -> Child:
    """Run ``args`` to completion; wall time from spawn to exit, peak RSS from wait4."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        process = subprocess.Popen(args, stdout=out, stderr=err, env=env, cwd=cwd)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)  # tell Popen it has been reaped
        out.seek(0)
        err.seek(0)
        return Child(args, process.returncode, wall, usage.ru_maxrss / 1024, out.read(), err.read())


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # the same for both sides; nnrun sets it itself anyway
    env.setdefault("COLUMNS", "120")
    env.update(extra)
    return env


def find_data_dir() -> Path:
    """``$NNRUN_DATA_DIR``, else ``../shared/datasets`` beside the checkout (as the Makefile does)."""
    env = os.environ.get("NNRUN_DATA_DIR")
    candidates = [Path(env).expanduser()] if env else [ROOT.parent / "shared" / "datasets"]
    for folder in candidates:
        if (folder / "mnist").is_dir() and (folder / "fashion-mnist").is_dir() and (folder / "diabetes").is_dir():
            os.environ["NNRUN_DATA_DIR"] = str(folder.resolve())
            return folder.resolve()
    raise SystemExit(
        "bench: the datasets were not found. Set NNRUN_DATA_DIR to a folder with mnist/, fashion-mnist/ "
        f"(the four IDX .gz files each) and diabetes/diabetes.csv. Looked in: {', '.join(map(str, candidates))}."
    )


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def fmt_spread(s: dict[str, float], digits: int = 2) -> str:
    if s["n"] == 1:
        return f"{s['median']:.{digits}f}"
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


def machine() -> dict[str, str]:
    """CPU, cores, memory, load and library versions, for the report's header."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_kb = int(next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal")).split()[1])
        memory = f"{mem_kb / 1024 ** 2:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        memory = "?"
    versions = {}
    for package in ("tensorflow", "keras", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "?"
    peak, peak_note = fp32_peak()
    return {
        "cpu": cpu,
        "flags": " ".join(sorted(cpu_flags() & SHOWN_FLAGS)) or "none of interest",
        "fp32_peak_gflops": f"{peak:.0f}",
        "fp32_peak_note": peak_note,
        "cores": str(os.cpu_count()),
        "memory": memory,
        "python": platform.python_version(),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        **versions,
    }


#: The CPU flags that decide how fast float32 and bfloat16 training can be.
SHOWN_FLAGS = {"avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"}


def _cpuinfo_field(name: str) -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":")[0].strip() == name:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def cpu_flags() -> set[str]:
    return set(_cpuinfo_field("flags").split())


def fp32_peak() -> tuple[float, str]:
    """Nominal float32 peak GFLOP/s of this machine's cores, and how it was reckoned.

    cores x clock (/proc/cpuinfo's cpu MHz) x FMA lanes x FMA units x 2. AVX-512: 16 lanes; two FMA units on
    Intel Xeons and AMD Zen 5 (family 26), one 512-bit pass per cycle on Zen 4 (family 25). AVX2: 8 lanes, two
    units. A nominal figure: turbo clocks are higher, and a VM's vCPUs may share physical cores.
    """
    flags, cores = cpu_flags(), os.cpu_count() or 1
    try:
        ghz = float(_cpuinfo_field("cpu MHz")) / 1000
    except ValueError:
        ghz = 0.0
    vendor, family = _cpuinfo_field("vendor_id"), _cpuinfo_field("cpu family")
    if "avx512f" in flags:
        lanes, units = 16, 1 if vendor == "AuthenticAMD" and family == "25" else 2
    elif "avx2" in flags and "fma" in flags:
        lanes, units = 8, 2
    else:
        lanes, units = 4, 1
    flops = lanes * units * 2
    return cores * ghz * flops, f"{cores} cores x {ghz:.2f} GHz x {lanes} fp32 lanes x {units} FMA unit(s) x 2"


def machine_line(info: dict[str, str]) -> str:
    return (
        f"{info['cpu']} (flags: {info.get('flags', '?')}; nominal fp32 peak {info.get('fp32_peak_gflops', '?')} GFLOP/s = "
        f"{info.get('fp32_peak_note', '?')}), {info['cores']} cores, {info['memory']} RAM; Python {info['python']}, "
        f"TensorFlow {info['tensorflow']}, Keras {info['keras']}, NumPy {info['numpy']}; load average at start {info['load']}"
    )


def publish(lines: list[str], out: Path | None) -> None:
    """Print a report's markdown lines, and write them to ``out`` when one is given."""
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        out.write_text(text)
