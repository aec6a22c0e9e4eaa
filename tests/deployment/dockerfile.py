"""The Dockerfile, read: its instructions by stage, and what the final stage sets.

Numbers and names are read from the file, never repeated in the tests, so its owner can change
them and the rules still apply.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from functools import cache

from tests.helpers import ROOT


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, continuation lines joined, in the stage it belongs to."""

    keyword: str
    arguments: str
    stage: int

    def words(self) -> list[str]:
        return shlex.split(self.arguments)


@cache
def dockerfile() -> tuple[Instruction, ...]:
    instructions: list[Instruction] = []
    stage, pending = -1, ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue  # comments (and parser directives), also inside a continuation
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        if pending.strip():
            keyword, _, arguments = pending.strip().partition(" ")
            if keyword.upper() == "FROM":
                stage += 1
            instructions.append(Instruction(keyword.upper(), arguments.strip(), stage))
        pending = ""
    return tuple(instructions)


def instructions(keyword: str, stage: int | None = None) -> list[Instruction]:
    return [i for i in dockerfile() if i.keyword == keyword and (stage is None or i.stage == stage)]


def final_stage() -> int:
    return dockerfile()[-1].stage


def image_env() -> dict[str, str]:
    """ENV of the final stage (``ENV A=1 B=2`` form)."""
    env: dict[str, str] = {}
    for instruction in instructions("ENV", final_stage()):
        for word in instruction.words():
            name, _, value = word.partition("=")
            env[name] = value
    return env


def image_user() -> tuple[int, int | None]:
    user = instructions("USER")[-1].arguments
    match = re.fullmatch(r"(\d+)(?::(\d+))?", user)
    assert match, f"USER {user!r} is not numeric (Kubernetes' runAsNonRoot cannot check a name)"
    return int(match[1]), int(match[2]) if match[2] else None
