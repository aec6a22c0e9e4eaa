"""A description of the machine a benchmark ran on."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import onnxruntime

from function.cgroup import available_cpus


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe() -> str:
    """One line: cores, CPU model, kernel, Python and onnxruntime versions."""
    return (
        f"{os.cpu_count()} logical CPUs ({available_cpus()} usable by this process), {cpu_model()}; "
        f"Linux {platform.release()}; Python {platform.python_version()}; onnxruntime {onnxruntime.__version__}"
    )
