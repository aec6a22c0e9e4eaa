"""The main container, run as knative/service.yaml runs it, from its start to `docker stop`: the
checks in the order they need it (the liveness probe is sampled meanwhile, until test_stop)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import signal
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bench import http1, procs
from bench.http1 import Connection, Cut, Load, Outcome, Refused, Response, Upload, fetch
from function.cloudevents.event_types import CLASSIFIED, CLASSIFY, EVENTS_PATH
from tests.container import containers
from tests.container.containers import docker
from tests.container.harness import Context, Network, Service, example, judge, mib, seconds, verdict

pytestmark = pytest.mark.container

KILL_CLIENTS = 16
STOP_CLIENTS = 16
STOP_UPLOADS = 8


def test_ready(main: Service, context: Context) -> None:
    """/readyz answers 200 within the documented time after the container starts."""
    verdict(
        main.ready_at <= context.ready_documented,
        f"/readyz 200 {seconds(main.ready_at)} after the container started (documented: about "
        f"{context.ready_documented:g} s, {context.ready_source}); /healthz first 200 at {seconds(main.healthz_at)}",
    )


def test_security_context(main: Service, network: Network, context: Context) -> None:
    spec, container = context.spec, main.container
    host = container.inspect()["HostConfig"]
    problems = []
    expected = {
        "ReadonlyRootfs": spec.read_only,
        "CapDrop": spec.cap_drop or None,
        "User": spec.user,
        "NanoCpus": int(spec.cpus * 1e9),
        "Memory": spec.memory,
    }
    actual = {**host, "User": container.inspect()["Config"]["User"]}
    for key, value in expected.items():
        if actual.get(key) != value:
            problems.append(f"{key} {actual.get(key)!r} != {value!r}")
    if spec.no_new_privileges and "no-new-privileges" not in (host.get("SecurityOpt") or []):
        problems.append("no-new-privileges not set")
    processes = container.processes()
    pids = [pid for group in processes.values() for pid in group]
    uid, _, gid = spec.user.partition(":")
    for pid in pids:
        status = procs.status(pid)
        if set(status["Uid"].split()) != {uid} or (gid and set(status["Gid"].split()) != {gid}):
            problems.append(f"pid {pid}: uid {status['Uid']} gid {status['Gid']}")
        if int(status["CapEff"], 16) or int(status["CapPrm"], 16) or int(status["CapBnd"], 16):
            problems.append(f"pid {pid}: capabilities {status['CapEff']}/{status['CapBnd']}")
        if spec.no_new_privileges and status.get("NoNewPrivs") != "1":
            problems.append(f"pid {pid}: NoNewPrivs {status.get('NoNewPrivs')}")
        if spec.seccomp == "RuntimeDefault" and status.get("Seccomp") != "2":
            problems.append(f"pid {pid}: Seccomp {status.get('Seccomp')} (2 = filtered)")
    mounts = {}
    for line in Path(f"/proc/{container.pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        separator = fields.index("-")
        mounts[fields[4]] = (fields[5], fields[separator + 1], fields[separator + 3])
    root_options = mounts.get("/", ("", "", ""))[0].split(",")
    if spec.read_only and "ro" not in root_options:
        problems.append(f"/ is mounted {root_options}")
    for path, size in spec.tmpfs.items():
        kind, options = mounts.get(path, ("", "?", ""))[1], mounts.get(path, ("", "", ""))[2]
        if kind != "tmpfs" or f"size={size // 1024}k" not in options:
            problems.append(f"{path}: {kind} {options}")
    image_user = docker("image", "inspect", "-f", "{{.Config.User}}", context.image).strip()
    numeric = re.fullmatch(r"(\d+)(:\d+)?", image_user)
    if spec.run_as_non_root and (numeric is None or numeric.group(1) == "0"):
        problems.append(f"runAsNonRoot needs a numeric non-root USER in the image, it has {image_user!r}")
    network.sample_tmpfs(main)
    verdict(
        not problems,
        "; ".join(problems)
        if problems
        else (
            f"{len(pids)} processes (server, forkserver, resource tracker, {len(processes['workers'])} workers) "
            f"run as {spec.user} with no capabilities, NoNewPrivs 1, seccomp filtered (RuntimeDefault), "
            f"on a read-only root; image USER {image_user}; flags from knative/service.yaml: "
            f"{' '.join(spec.flags())}"
        ),
    )


async def test_endpoints(main: Service, context: Context) -> None:
    """Every operation in openapi.json (with ?scores=true where documented), /openapi.json, /docs
    and the assets it loads answer 200."""
    ip, port = main.container.ip, context.spec.port
    sample = context.texts[0]
    results: list[str] = []
    problems: list[str] = []

    async def expect(
        method: str,
        path: str,
        body: Any = None,
        check: Callable[[Response], bool] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        data = json.dumps(body).encode() if body is not None else None
        try:
            answer = await fetch(ip, port, method, path, data, headers=headers)
        except (Cut, Refused) as error:
            problems.append(f"{method} {path}: {error}")
            return
        good = answer.status == 200 and (check is None or check(answer))
        (results if good else problems).append(f"{method} {path} {answer.status}")
        if not good:
            problems[-1] += f" {answer.body[:160]!r}"

    def labelled(answer: Response) -> bool:
        return answer.json().get("label") in context.model_labels

    def scored(answer: Response) -> bool:
        value = answer.json()
        return value.get("label") in context.model_labels and abs(sum(value["scores"].values()) - 1) < 1e-3

    def batch(answer: Response) -> bool:
        return [label in context.model_labels for label in answer.json().get("labels", [])] == [True, True]

    def inferred(answer: Response) -> bool:
        outputs = {o["name"]: o for o in answer.json().get("outputs", [])}
        return [label in context.model_labels for label in outputs["label"]["data"]] == [True, True]

    def answered_event(answer: Response) -> bool:
        structured = answer.header("Content-Type") == "application/cloudevents+json"
        reply = answer.json() if structured else {"type": answer.header("ce-type"), "data": answer.json()}
        return reply["type"] == CLASSIFIED and reply["data"].get("label") in context.model_labels

    event = {"specversion": "1.0", "id": "post-1", "source": "/container-test", "type": CLASSIFY}
    tensor = {"name": "text", "datatype": "BYTES", "shape": [2], "data": [sample, context.texts[1]]}
    paths = context.openapi.get("paths", {})
    for template, operations in paths.items():
        path = template.replace("{name}", context.model["name"]).replace("{version}", context.model["version"])
        for method, operation in operations.items():
            method = method.upper()
            with_scores = any(p.get("name") == "scores" for p in operation.get("parameters", []))
            if method == "GET":
                await expect("GET", path)
            elif path.endswith("/infer"):
                await expect("POST", path, {"inputs": [tensor]}, inferred)
            elif path == EVENTS_PATH:  # a CloudEvent, in each content mode
                binary = {f"ce-{name}": value for name, value in event.items()}
                await expect("POST", path, {"text": sample}, answered_event, binary)
                structured = {"Content-Type": "application/cloudevents+json"}
                await expect("POST", path, event | {"data": {"text": sample}}, answered_event, structured)
            elif path == "/feedback":
                await feed_back(context, ip, port, sample, expect)
            elif path.endswith("/predictions"):
                await expect("POST", path, {"texts": [sample, context.texts[1]]}, batch)
                if with_scores:
                    await expect("POST", path + "?scores=true", {"texts": [sample, context.texts[1]]}, batch)
            else:
                await expect("POST", path, {"text": sample}, labelled)
                if with_scores:
                    await expect("POST", path + "?scores=true", {"text": sample}, scored)
    await expect("GET", "/openapi.json")
    await expect("GET", "/openapi3.json")
    docs = None
    try:
        docs = await fetch(ip, port, "GET", "/docs")
    except (Cut, Refused) as error:
        problems.append(f"GET /docs: {error}")
    if docs is not None:
        (results if docs.status == 200 else problems).append(f"GET /docs {docs.status}")
        links = re.findall(r'(?:src|href|data-url)="([^"#?:]+)"', docs.body.decode(errors="replace"))
        assets = sorted({urllib.parse.urljoin("/docs", link) for link in links})
        for asset in assets:
            await expect("GET", asset)
    verdict(not problems, "; ".join(problems) if problems else f"{len(results)} answered 200: {', '.join(results)}")


async def feed_back(context: Context, ip: str, port: int, text: str, expect: Callable[..., Awaitable[None]]) -> None:
    """A prediction that names its model and revision, then feedback on its id."""
    answer = await fetch(ip, port, "POST", "/prediction", json.dumps({"text": text}).encode())
    served = {name: answer.header(name) for name in ("X-Model-Version", "X-Revision")}
    wanted = {"X-Model-Version": context.model["version"], "X-Revision": context.spec.env.get("K_REVISION")}
    prediction = answer.json()

    def counted(feedback: Response) -> bool:
        return served == wanted and feedback.json() == {
            "model_version": context.model["version"],
            "predicted": prediction["label"],
            "actual": "space",
        }

    await expect("POST", "/feedback", {"prediction_id": prediction.get("prediction_id"), "label": "space"}, counted)


async def test_openapi(main: Service, network: Network, context: Context) -> None:
    """The served /openapi.json equals the committed file."""
    answer = await network.get(main, "/openapi.json")
    committed = (context.root / "openapi.json").read_bytes()
    served = answer.json() if answer.status == 200 else None
    same = served == context.openapi
    verdict(
        same,
        f"served /openapi.json {'equals' if same else 'differs from'} the committed openapi.json "
        f"({'byte for byte' if answer.body.strip() == committed.strip() else 'as JSON; bytes differ'}; "
        f"{len(answer.body)} bytes served)"
        if served is not None
        else f"GET /openapi.json answered {answer.status}",
    )


async def test_accuracy(main: Service, context: Context) -> None:
    """All test texts, through POST /prediction and through POST /predictions, give exactly
    served.accuracy of model/evaluation.json."""
    ip, port = main.container.ip, context.spec.port
    texts, gold = context.texts, context.labels
    singles: list[str] = [""] * len(texts)
    queue = iter(range(len(texts)))

    async def client() -> None:
        connection = Connection(ip, port)
        try:
            for index in queue:
                answer = await connection.request("POST", "/prediction", json.dumps({"text": texts[index]}).encode())
                singles[index] = answer.json().get("label", f"<{answer.status}>")
        finally:
            await connection.close()

    began = time.time()
    await asyncio.gather(*(client() for _ in range(8)))
    single_time = time.time() - began
    # POST /predictions: batches within MAX_BATCH_ITEMS texts and MAX_BODY_BYTES.
    limit_items, limit_bytes = int(context.setting("MAX_BATCH_ITEMS")), int(context.setting("MAX_BODY_BYTES"))
    batches: list[list[int]] = [[]]
    size = 16
    for index, text in enumerate(texts):
        cost = len(json.dumps(text).encode()) + 2
        if len(batches[-1]) >= limit_items or size + cost > limit_bytes:
            batches.append([])
            size = 16
        batches[-1].append(index)
        size += cost
    batched: list[str] = [""] * len(texts)
    batch_queue = iter(batches)

    async def batch_client() -> None:
        connection = Connection(ip, port, timeout=60)
        try:
            for batch in batch_queue:
                body = json.dumps({"texts": [texts[i] for i in batch]}).encode()
                answer = await connection.request("POST", "/predictions", body)
                labels = answer.json().get("labels", [])
                for position, index in enumerate(batch):
                    batched[index] = labels[position] if position < len(labels) else f"<{answer.status}>"
        finally:
            await connection.close()

    await asyncio.gather(*(batch_client() for _ in range(2)))
    n = len(texts)
    correct_single = sum(a == b for a, b in zip(singles, gold, strict=True))
    correct_batch = sum(a == b for a, b in zip(batched, gold, strict=True))
    expected, expected_n = context.served["accuracy"], context.served.get("n", n)
    disagree = sum(a != b for a, b in zip(singles, batched, strict=True))
    verdict(
        n == expected_n and correct_single / n == expected and correct_batch / n == expected and not disagree,
        f"{n} test texts: POST /prediction {correct_single}/{n} = {correct_single / n!r} ({seconds(single_time)}), "
        f"POST /predictions in {len(batches)} batches {correct_batch}/{n} = {correct_batch / n!r}, "
        f"{disagree} labels differ between the two; "
        f"model/evaluation.json served.accuracy {expected!r} (n {expected_n})",
    )


async def test_worker_kill(main: Service, network: Network, context: Context, egress_window: None) -> None:
    """A worker SIGKILLed under load is replaced, /readyz turns 503 and returns within a cold
    start's time, and only requests the dead worker held got 503 model_unavailable."""
    ip, port = main.container.ip, context.spec.port
    before = await network.pool(main)
    workers = main.container.processes()["workers"]
    batch_max = int(context.setting("BATCH_MAX_SIZE"))
    limit = context.ready_documented
    load = Load(ip, port, network.short_bodies, clients=KILL_CLIENTS)
    load.start()
    await asyncio.sleep(1.5)
    victim = workers[0]
    killed = time.time()
    os.kill(victim, signal.SIGKILL)
    unready_at = back_at = math.nan
    deadline = killed + context.setting("WORKER_START_TIMEOUT_SECONDS") + 5
    while time.time() < deadline:
        with contextlib.suppress(Cut, Refused):
            answer = await fetch(ip, port, "GET", "/readyz", within=2.0)
            if answer.status == 503 and math.isnan(unready_at):
                unready_at = answer.done - killed
            if answer.status == 200 and not math.isnan(unready_at):
                back_at = answer.done - killed
                break
        await asyncio.sleep(0.02)
    await asyncio.sleep(1.0)
    outcomes = await load.stop()
    after = await network.pool(main)
    now = main.container.processes()["workers"]
    network.sample_tmpfs(main)
    network.kill_seen = not math.isnan(unready_at)
    failures = [o for o in outcomes if o.answer is None]
    unavailable = [o for o in outcomes if o.answer is not None and o.answer.status == 503]
    others = [o for o in outcomes if o.answer is not None and o.answer.status not in (200, 503)]
    # Held by the worker: sent before the service could know it was dead (the first /readyz 503
    # says it knew; a request sent the same millisecond as the SIGKILL can still reach the dying
    # worker) and still unanswered at the kill. Anything sent later must not fail.
    noticed = killed + (unready_at if not math.isnan(unready_at) else 0.0)
    not_held = [o for o in unavailable if not (o.started < noticed and o.ended > killed)]
    after_kill = [o for o in unavailable if o.started >= killed]
    wrong_error = [o for o in unavailable if o.answer is not None and o.answer.error != "model_unavailable"]
    restarts = after.get("textclf_pool_worker_restarts_total", math.nan) - before.get(
        "textclf_pool_worker_restarts_total", math.nan
    )
    configured = after.get("textclf_pool_workers", math.nan)
    problems = []
    if math.isnan(back_at):
        problems.append("readiness did not return" if not math.isnan(unready_at) else "/readyz never turned 503")
    elif back_at > limit:
        problems.append(f"readiness took {seconds(back_at)} to return, more than a cold start's {limit:g} s")
    if victim in now or len(now) != configured:
        problems.append(f"workers now {now} (killed {victim}, configured {configured:g})")
    if restarts != 1 or after.get("textclf_pool_workers_alive") != configured:
        problems.append(f"restarts +{restarts:g}, alive {after.get('textclf_pool_workers_alive')}")
    if failures:
        problems.append(f"{len(failures)} without an answer, e.g. {failures[0].failure}")
    if others:
        problems.append(f"{len(others)} answered otherwise, e.g. {example(others[0])}")
    if not_held:
        timing = ", ".join(
            f"sent {o.started - killed:+.3f} s, answered {o.ended - killed:+.3f} s" for o in not_held[:3]
        )
        problems.append(f"{len(not_held)} of the 503s were sent after the service knew the worker was dead ({timing})")
    if wrong_error:
        problems.append(f"{len(wrong_error)} 503s were not model_unavailable")
    if len(unavailable) > batch_max:
        problems.append(f"{len(unavailable)} 503s, more than one batch (BATCH_MAX_SIZE {batch_max})")
    judge(
        problems,
        f"SIGKILL to worker pid {victim} under {KILL_CLIENTS} clients: /readyz 503 after "
        f"{seconds(unready_at)}, 200 again {seconds(back_at)} after the kill (limit {limit:g} s, a cold start); "
        f"textclf_pool_worker_restarts_total +{restarts:g}, workers {workers} -> {now}; "
        f"{len(outcomes)} requests: {http1.statuses(outcomes)}; {len(unavailable) - len(not_held)} of the "
        f"{len(unavailable)} 503s held by the dead worker (at most {batch_max}, BATCH_MAX_SIZE; "
        f"{len(after_kill)} of them sent in the {seconds(noticed - killed)} between the SIGKILL and /readyz 503)",
    )


async def test_stop(main: Service, network: Network, context: Context) -> None:
    """`docker stop` under load with bodies still uploading: every request in flight gets an
    answer (200 or 503), exit code 0 within half of SHUTDOWN_GRACE_SECONDS."""
    await network.end_liveness(main)
    ip, port = main.container.ip, context.spec.port
    grace = context.setting("SHUTDOWN_GRACE_SECONDS")
    limit = grace / 2
    stop_timeout = math.ceil(context.spec.termination_grace)
    load = Load(ip, port, network.short_bodies, clients=STOP_CLIENTS)
    load.start()
    text = " ".join(context.texts)[: 512 * 1024]
    body = json.dumps({"text": text}).encode()
    plan = Upload(first=64 * 1024, chunk=16 * 1024, pause=0.1)  # about 3 s per body

    async def upload() -> Outcome:
        outcome = Outcome(started=time.time())
        connection = Connection(ip, port, timeout=stop_timeout + 10)
        try:
            outcome.answer = await connection.request("POST", "/prediction", body, upload=plan)
        except (Cut, Refused) as error:
            outcome.failure = f"{'cut' if isinstance(error, Cut) else 'refused'}: {error}"
        finally:
            outcome.ended = time.time()
            await connection.close()
        return outcome

    await asyncio.sleep(1.0)
    uploads = [asyncio.create_task(upload()) for _ in range(STOP_UPLOADS)]
    await asyncio.sleep(0.6)
    stopped = time.time()
    stopping = asyncio.create_task(
        containers.adocker("stop", "-t", str(stop_timeout), main.container.name, within=stop_timeout + 30)
    )
    outcomes = await load.stop()
    uploaded = await asyncio.gather(*uploads)
    await stopping
    state = main.container.state()
    exited_after = containers.parse_time(state["FinishedAt"]) - stopped
    before = [o for o in outcomes if o.started < stopped]
    in_flight = [o for o in before if o.ended > stopped]
    unanswered = [o for o in before + uploaded if o.answer is None]
    bad = [o for o in before if o.answer is not None and o.answer.status not in (200, 503)]
    # An upload that ends within the grace is read to the end and answered.
    bad += [o for o in uploaded if o.answer is not None and o.answer.status != 200]
    still_uploading = sum(1 for o in uploaded if o.answer is None or o.answer.sent > stopped)
    problems = []
    if unanswered:
        ends = sorted(o.ended - stopped for o in unanswered)
        problems.append(
            f"{len(unanswered)} requests got no answer, cut {ends[0]:+.1f} to {ends[-1]:+.1f} s after SIGTERM, "
            f"e.g. {unanswered[0].failure}"
        )
    if bad:
        problems.append(f"{len(bad)} answered otherwise, e.g. {example(bad[0])}")
    if state["ExitCode"] != 0:
        problems.append(f"exit code {state['ExitCode']}")
    if exited_after > limit:
        problems.append(f"exited {seconds(exited_after)} after SIGTERM, over {limit:g} s")
    if still_uploading == 0:
        problems.append("no upload was still in progress at the stop: the check did not test what it should")
    judge(
        problems,
        f"docker stop -t {stop_timeout} (timeoutSeconds) under {STOP_CLIENTS} clients with {still_uploading} of "
        f"{STOP_UPLOADS} bodies still uploading: exit code {state['ExitCode']} {seconds(exited_after)} after "
        f"SIGTERM (limit {limit:g} s = SHUTDOWN_GRACE_SECONDS/2); no new requests after it (as Knative drains "
        f"first); {len(in_flight)} in flight: "
        f"{http1.statuses(in_flight)}; uploads: {http1.statuses(uploaded)}",
    )


async def writable_twin(network: Network, context: Context) -> Service | None:
    """The same run with a writable root: what the service would write if it could."""
    service = network.start("writable", read_only=False)
    if not await network.wait_ready(service):
        return None
    for path in ("/model", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
        with contextlib.suppress(Cut, Refused):
            await network.get(service, path)
    load = Load(service.container.ip, context.spec.port, network.short_bodies, clients=8)
    load.start()
    await asyncio.sleep(1.0)
    os.kill(service.container.processes()["workers"][0], signal.SIGKILL)
    await asyncio.sleep(2.0)
    await load.stop()
    await containers.adocker("stop", "-t", str(math.ceil(context.spec.termination_grace)), service.container.name)
    return service


async def test_docker_diff(main: Service, network: Network, context: Context) -> None:
    """`docker diff` is empty for the read-only run and for the same run with a writable root."""
    writable = await writable_twin(network, context)
    changes = main.container.diff()
    writable_changes = writable.container.diff() if writable else []
    verdict(
        not changes and not writable_changes and writable is not None,
        f"read-only run (start, load, worker kill, stop): {len(changes)} changes {changes[:8]}; same run with a "
        f"writable root: {len(writable_changes)} changes {writable_changes[:8]}; tmpfs "
        + ", ".join(
            f"{path} used {main.tmpfs_used / 1024:.0f} KiB of {mib(size)}" for path, size in context.spec.tmpfs.items()
        )
        + f" (entries seen: {', '.join(sorted(main.tmpfs_entries)) or 'none'})",
    )
