"""What the cgroup allows: CPUs (quota and affinity) and memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from function.cgroup import cgroup_cpu_limit, cpus_from


@pytest.mark.parametrize(
    ("content", "expected"),
    [("max 100000\n", None), ("200000 100000\n", 2.0), ("150000 100000\n", 1.5), ("50000 100000", 0.5), ("junk", None)],
)
def test_cgroup_v2_quota(tmp_path: Path, content: str, expected: float | None) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text(content)
    assert cgroup_cpu_limit(cpu_max, tmp_path / "none", tmp_path / "none") == expected


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    (tmp_path / "quota").write_text("300000\n")
    (tmp_path / "period").write_text("100000\n")
    assert cgroup_cpu_limit(tmp_path / "missing", tmp_path / "quota", tmp_path / "period") == 3.0
    (tmp_path / "quota").write_text("-1\n")
    assert cgroup_cpu_limit(tmp_path / "missing", tmp_path / "quota", tmp_path / "period") is None


@pytest.mark.parametrize(
    ("affinity", "quota", "expected"),
    [(64, 2.0, 2), (64, 1.5, 2), (64, None, 64), (4, 8.0, 4), (2, 0.5, 1), (1, None, 1)],
)
def test_workers_follow_the_smaller_of_affinity_and_quota(affinity: int, quota: float | None, expected: int) -> None:
    assert cpus_from(affinity, quota) == expected
