"""The pod is locked down: a numeric non-root user, a read-only root with one writable emptyDir
for the image's TMPDIR, nothing written at run time, no privilege, no capability."""

from __future__ import annotations

import pytest

from tests.deployment.dockerfile import final_stage, image_env, image_user, instructions
from tests.deployment.manifests import CONTAINERS, POD_SPECS


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    uid, gid = image_user()
    assert uid != 0
    assert gid != 0
    assert instructions("USER")[-1].stage == final_stage()


@pytest.mark.parametrize("variant", CONTAINERS)
def test_the_security_context_is_locked_down(variant: str) -> None:
    context = CONTAINERS[variant]()["securityContext"]
    uid, gid = image_user()
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == uid
    assert context.get("runAsGroup", gid) == gid
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}


@pytest.mark.parametrize("variant", CONTAINERS)
def test_the_image_s_tmpdir_is_a_writable_emptydir_on_the_read_only_root(variant: str) -> None:
    container, spec = CONTAINERS[variant](), POD_SPECS[variant]()
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == image_env()["TMPDIR"]]
    assert not mount.get("readOnly", False)
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    assert "emptyDir" in volume


def test_nothing_is_written_at_run_time() -> None:
    env = image_env()
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert [r for r in instructions("RUN", 0) if "compileall" in r.arguments and "function" in r.arguments]
    assert [r for r in instructions("RUN", final_stage()) if "compileall" in r.arguments], "standard library .pyc"
    assert env.get("TMPDIR", "").startswith("/"), "the forkserver's socket needs a known writable folder"
