"""A new model's rollout (knative/candidate, canary, promote, rollback) and cluster-local, as Knative gets them.

Each step is a kustomize Component listed in knative/kustomization.yaml. The tests render every
step, alone and beside ``cluster-local``, with a small kustomize of their own (what these files
use: resources, Components, JSON patches and merge patches), check it against ``kubectl
kustomize`` where that is installed, and hold the result to the Knative Service schema and to
what the rollout promises (knative/DEPLOY.md, "Rolling out a new model"). The live-accuracy
PromQL of that walkthrough runs in ``promtool`` on series whose answer is known.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deployment.manifests import knative_service, schema_errors
from tests.helpers import ROOT

KNATIVE = ROOT / "knative"
ROLLOUTS = ("canary", "promote", "rollback")
COMPONENTS = ("candidate", *ROLLOUTS, "cluster-local")
#: Every state `kubectl apply -k knative/` can be in: the Components turned on.
STATES: dict[str, tuple[str, ...]] = {
    "plain": (),
    **{name: (name,) for name in ROLLOUTS},
    "cluster-local": ("cluster-local",),
    **{f"cluster-local + {name}": ("cluster-local", name) for name in ROLLOUTS},
}
VISIBILITY = "networking.knative.dev/visibility"
#: A revision's name: a DNS-1035 label (Knative's validateRevisionName), at most 63 characters.
DNS_1035 = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")


# ---- a small kustomize, for these files ---------------------------------------------------------


def kustomization(folder: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((folder / "kustomization.yaml").read_text())
    return document


def merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """A merge patch as kustomize applies one to a custom resource it has no schema for (RFC 7386):
    maps merge, a list or a value replaces, null deletes."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def json_patch(document: dict[str, Any], operations: Sequence[dict[str, Any]]) -> None:
    """RFC 6902's ``replace`` and ``add``: what these patches use."""
    for operation in operations:
        *parents, last = [part.replace("~1", "/").replace("~0", "~") for part in operation["path"].split("/")[1:]]
        node: Any = document
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key: Any = int(last) if isinstance(node, list) else last
        exists = 0 <= key < len(node) if isinstance(node, list) else key in node
        if operation["op"] == "replace" and not exists:
            pytest.fail(f"replace {operation['path']}: nothing there (kustomize fails too)")
        if operation["op"] not in ("replace", "add"):
            pytest.fail(f"an operation this renderer does not know: {operation['op']}")
        node[key] = copy.deepcopy(operation["value"])


def matches(document: dict[str, Any], target: dict[str, str]) -> bool:
    group, _, version = document["apiVersion"].rpartition("/")
    wanted = {"group": group, "version": version, "kind": document["kind"], "name": document["metadata"]["name"]}
    return all(wanted[key] == value for key, value in target.items())


def apply_component(documents: list[dict[str, Any]], folder: Path) -> None:
    component = kustomization(folder)
    assert component["kind"] == "Component", folder
    assert set(component) <= {"apiVersion", "kind", "components", "patches"}, f"{folder}: a field not rendered here"
    for name in component.get("components", []):
        apply_component(documents, (folder / name).resolve())
    for patch in component.get("patches", []):
        assert set(patch) <= {"path", "target"}, patch
        content = yaml.safe_load((folder / patch["path"]).read_text())
        if isinstance(content, list):
            targets = [d for d in documents if matches(d, patch["target"])]
            assert len(targets) == 1, f"{folder / patch['path']}: {len(targets)} targets"
            json_patch(targets[0], content)
        else:
            identity = {"kind": content["kind"], "name": content["metadata"]["name"]}
            (target,) = [d for d in documents if matches(d, identity)]
            merge(target, content)


def render(components: Sequence[str] = ()) -> list[dict[str, Any]]:
    """What `kubectl apply -k knative/` sends when its kustomization lists ``components`` (what it
    lists now is checked apart)."""
    root = kustomization(KNATIVE)
    assert set(root) <= {"apiVersion", "kind", "resources", "components"}, "a field not rendered here"
    documents = [doc for name in root["resources"] for doc in yaml.safe_load_all((KNATIVE / name).read_text()) if doc]
    for name in components:
        apply_component(documents, KNATIVE / name)
    return documents


def service(components: Sequence[str] = ()) -> dict[str, Any]:
    (document,) = [d for d in render(components) if d["kind"] == "Service"]
    return document


def template_name(document: dict[str, Any]) -> str:
    return str(document["spec"]["template"]["metadata"]["name"])


def image(document: dict[str, Any]) -> str:
    (container,) = document["spec"]["template"]["spec"]["containers"]
    return str(container["image"])


def traffic(document: dict[str, Any]) -> list[dict[str, Any]]:
    targets: list[dict[str, Any]] = document["spec"]["traffic"]
    return targets


def by_tag(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {target["tag"]: target for target in traffic(document) if "tag" in target}


# ---- what every state is --------------------------------------------------------------------------


@pytest.mark.parametrize("state", STATES)
def test_every_state_is_a_service_the_crd_schema_accepts_with_unknown_fields_as_errors(state: str) -> None:
    assert schema_errors(service(STATES[state])) == []


@pytest.mark.parametrize("state", STATES)
def test_the_renderer_here_builds_what_kubectl_kustomize_builds(state: str, tmp_path: Path) -> None:
    kustomize = shutil.which("kustomize")
    kubectl = shutil.which("kubectl")
    if not (kustomize or kubectl):
        pytest.skip("neither kustomize nor kubectl is installed")
    folder = tmp_path / "knative"
    shutil.copytree(KNATIVE, folder)
    root = kustomization(folder)
    root["components"] = list(STATES[state])
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(root))
    command = [kustomize, "build", str(folder)] if kustomize else [str(kubectl), "kustomize", str(folder)]
    built = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert built.returncode == 0, built.stderr
    assert by_identity(d for d in yaml.safe_load_all(built.stdout) if d) == by_identity(render(STATES[state]))


def by_identity(documents: Iterable[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in documents}


@pytest.mark.parametrize("state", STATES)
def test_traffic_percentages_sum_to_100(state: str) -> None:
    assert sum(target.get("percent", 0) for target in traffic(service(STATES[state]))) == 100


@pytest.mark.parametrize("state", STATES)
def test_each_target_is_one_revision_under_a_tag_of_its_own(state: str) -> None:
    document = service(STATES[state])
    prefix = document["metadata"]["name"] + "-"
    tags = [target["tag"] for target in traffic(document) if "tag" in target]
    assert len(tags) == len(set(tags))
    for target in traffic(document):
        assert ("revisionName" in target) != bool(target.get("latestRevision")), target
        if "revisionName" in target:
            assert DNS_1035.fullmatch(target["revisionName"])
            assert target["revisionName"].startswith(prefix)
            assert target.get("latestRevision", False) is False


@pytest.mark.parametrize("state", STATES)
def test_a_rollout_changes_nothing_but_the_revision_s_name_its_image_and_the_traffic(state: str) -> None:
    """So the candidate is the current revision but for its model, and promoting it is the same
    Service as knative/service.yaml once that names the candidate."""
    plain, rolled = service(), service(STATES[state])
    for document in (plain, rolled):
        del document["spec"]["template"]["metadata"]["name"], document["spec"]["traffic"]
        document["spec"]["template"]["spec"]["containers"][0]["image"] = "?"
        document["metadata"]["labels"].pop(VISIBILITY, None)
    assert rolled == plain


# ---- the revisions --------------------------------------------------------------------------------


def named_for_its_image(document: dict[str, Any]) -> bool:
    """newsgroups-classifier-<the image's tag, dots as dashes>."""
    tag = image(document).rsplit(":", 1)[1]
    return template_name(document) == f"{document['metadata']['name']}-{tag.replace('.', '-')}"


@pytest.mark.parametrize("components", [(), ("canary",)], ids=["current", "candidate"])
def test_a_revision_is_named_for_its_image_s_version(components: tuple[str, ...]) -> None:
    document = service(components)
    assert DNS_1035.fullmatch(template_name(document)), "Knative wants a DNS-1035 label"
    assert template_name(document).startswith(document["metadata"]["name"] + "-"), "and the service's name as prefix"
    assert named_for_its_image(document)


def test_the_candidate_is_another_revision_with_another_image_from_the_same_repository() -> None:
    current, candidate = service(), service(("canary",))
    assert template_name(candidate) != template_name(current)
    assert image(candidate) != image(current)
    assert image(candidate).rsplit(":", 1)[0] == image(current).rsplit(":", 1)[0]
    assert service() == knative_service(), "the plain deploy is knative/service.yaml as it is"


def test_the_canary_keeps_90_percent_on_the_current_revision_and_sends_10_to_the_candidate() -> None:
    canary = service(("canary",))
    tags = by_tag(canary)
    assert set(tags) == {"current", "candidate"}
    assert tags["current"] == {"tag": "current", "revisionName": template_name(service()), "percent": 90}
    assert tags["candidate"] == {"tag": "candidate", "latestRevision": True, "percent": 10}
    assert len(traffic(canary)) == 2


def test_promotion_routes_everything_to_the_candidate_as_the_plain_deploy_routes_its_own() -> None:
    promoted = service(("promote",))
    assert traffic(promoted) == traffic(service()) == [{"latestRevision": True, "percent": 100}]
    assert template_name(promoted) == template_name(service(("canary",)))


def test_rollback_routes_everything_to_the_current_revision_and_nothing_to_the_candidate() -> None:
    rolled_back = service(("rollback",))
    assert traffic(rolled_back) == [{"tag": "current", "revisionName": template_name(service()), "percent": 100}]
    assert not [t for t in traffic(rolled_back) if t.get("latestRevision")], "the candidate is routed nowhere"
    assert template_name(rolled_back) == template_name(service(("canary",))), "no new revision on rollback"


def test_the_emergency_rollback_command_routes_as_the_rollback_component_does() -> None:
    """knative/DEPLOY.md's `kubectl patch ... -p '<json>'`: a merge patch of the same traffic."""
    text = (KNATIVE / "DEPLOY.md").read_text()
    (body,) = re.findall(r"kubectl patch ksvc newsgroups-classifier --type merge \\\s*-p '([^']+)'", text)
    patched = service(("canary",))
    merge(patched, yaml.safe_load(body))
    assert traffic(patched) == traffic(service(("rollback",)))


# ---- cluster-local and the files --------------------------------------------------------------------


@pytest.mark.parametrize("state", [name for name in STATES if not name.startswith("cluster-local")])
def test_cluster_local_keeps_every_step_off_the_public_ingress(state: str) -> None:
    assert VISIBILITY not in service(STATES[state])["metadata"]["labels"], "the plain deploy is public"
    local = service(("cluster-local", *STATES[state]))
    assert local["metadata"]["labels"][VISIBILITY] == "cluster-local"
    assert VISIBILITY not in local["spec"]["template"]["metadata"].get("labels", {}), "a Service label, not a pod's"


def test_the_kustomization_turns_on_cluster_local_and_one_rollout_step_at_most() -> None:
    """Committed as applied: none (the plain deploy), cluster-local, a rollout step, or both. And
    no `images:` transformer: it runs after the Components and would give the candidate revision
    the current image."""
    root = kustomization(KNATIVE)
    listed = root.get("components", [])
    assert set(listed) <= {"cluster-local", *ROLLOUTS}, listed
    assert len([name for name in listed if name in ROLLOUTS]) <= 1, listed
    assert "images" not in root


@pytest.mark.parametrize("name", COMPONENTS)
def test_each_component_lists_every_file_beside_it(name: str) -> None:
    folder = KNATIVE / name
    component = kustomization(folder)
    listed = {patch["path"] for patch in component.get("patches", [])}
    assert listed == {p.name for p in folder.iterdir()} - {"kustomization.yaml"}
    for other in component.get("components", []):
        assert (folder / other / "kustomization.yaml").is_file(), other


def test_every_component_folder_is_one_of_these() -> None:
    standalone = {"kubernetes", "eventing"}  # kustomizations of their own, not Components
    folders = {p.parent.name for p in KNATIVE.glob("*/kustomization.yaml")} - standalone
    assert folders == set(COMPONENTS)


# ---- the walkthrough's PromQL -----------------------------------------------------------------------


def promql_blocks() -> list[str]:
    return re.findall(r"```promql\n(.*?)```", (KNATIVE / "DEPLOY.md").read_text(), re.DOTALL)


def test_the_live_accuracy_query_counts_the_right_answers_per_model_version(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("needs promtool (Debian's prometheus package; .ci/run installs it)")
    (accuracy,) = [block for block in promql_blocks() if "label_replace" in block]
    (counts,) = [block.strip() for block in promql_blocks() if block.strip().startswith("sum by (model_version) (")]

    def series(version: str, predicted: str, actual: str, pod: str, per_minute: int) -> dict[str, str]:
        labels = f'model_version="{version}", predicted="{predicted}", actual="{actual}", pod="{pod}"'
        return {"series": f"textclf_feedback_total{{{labels}}}", "values": f"0+{per_minute}x1500"}

    # Per minute: 2.0.0 right 9 times (on two pods), wrong once; 2.1.0 right 3 times, one of them
    # counted on a pod of the other revision, wrong once; 1.9.0 never right.
    inputs = [
        series("2.0.0", "hockey", "hockey", "a", 5),
        series("2.0.0", "space", "space", "b", 4),
        series("2.0.0", "hockey", "baseball", "a", 1),
        series("2.1.0", "space", "space", "a", 1),
        series("2.1.0", "space", "space", "c", 2),
        series("2.1.0", "baseball", "hockey", "c", 1),
        series("1.9.0", "baseball", "hockey", "d", 1),
    ]

    def expect(values: dict[str, float]) -> list[dict[str, Any]]:
        return [{"labels": f'{{model_version="{v}"}}', "value": value} for v, value in values.items()]

    tests = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": inputs,
                "promql_expr_test": [
                    {
                        "expr": accuracy,
                        "eval_time": "25h",
                        "exp_samples": expect({"2.0.0": 0.9, "2.1.0": 0.75, "1.9.0": 0}),
                    },
                    {
                        "expr": counts,
                        "eval_time": "25h",
                        "exp_samples": expect({"2.0.0": 14400, "2.1.0": 5760, "1.9.0": 1440}),
                    },
                ],
            }
        ],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    result = subprocess.run(
        [promtool, "test", "rules", "test.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_promql_block_of_the_walkthrough_parses(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("needs promtool (Debian's prometheus package; .ci/run installs it)")
    expressions = [line for block in promql_blocks() for line in split_queries(block)]
    assert len(expressions) >= 4
    rules = {
        "groups": [
            {"name": "walkthrough", "rules": [{"record": f"q{i}", "expr": e} for i, e in enumerate(expressions)]}
        ]
    }
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        [promtool, "check", "rules", "rules.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def split_queries(block: str) -> list[str]:
    """A block is one query over several lines, or one query a line when every line starts one."""
    lines = [line for line in block.strip().splitlines() if line.strip()]
    if len(lines) > 1 and all(line.startswith(("sum ", "max ", "1000 ")) for line in lines):
        return lines
    return [block.strip()]
