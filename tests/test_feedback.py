"""Prediction ids and POST /feedback: signed, self-contained ids; each counted once, by the version that predicted."""

from __future__ import annotations

import hmac
import json
import os
import re

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from function.command_line import parse_command_line
from function.errors import (
    FEEDBACK_REJECTIONS,
    DuplicateFeedback,
    ExpiredPredictionId,
    ForgedPredictionId,
    MalformedPredictionId,
    UnknownLabel,
)
from function.feedback import HmacSha256, PredictionIds
from function.setting_fields import SettingError
from function.settings import Settings
from tests.test_api import JSON, LABELS, post

KEY = "an example key of forty bytes, not a secret"
DAY = 86400.0
LABEL_LIST = sorted(LABELS)


class Clock:
    """Unix time that a test moves by hand."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def ids(version: str = "2.0.0", key: str = KEY, clock: Clock | None = None, remember: int = 1000) -> PredictionIds:
    return PredictionIds(key, version, LABEL_LIST, 30 * DAY, remember, clock or Clock())


# ---- the ids -----------------------------------------------------------------------------------


def test_an_id_names_the_version_and_label_it_was_issued_for_and_is_unique() -> None:
    issuer = ids()
    issued = issuer.issue(["hockey", "hockey", "space"])
    assert len(set(issued)) == 3
    assert [i.split("~")[:2] for i in issued] == [["2.0.0", "hockey"], ["2.0.0", "hockey"], ["2.0.0", "space"]]
    claim = issuer.check(issued[2], "politics")
    assert (claim.version, claim.label) == ("2.0.0", "space")


@pytest.mark.parametrize("key_bytes", [0, 1, 32, 63, 64, 65, 200])
def test_the_mac_is_hmac_sha_256_whatever_the_key_length(key_bytes: int) -> None:
    key, message = os.urandom(key_bytes), os.urandom(100)
    assert HmacSha256(key).hex(message) == hmac.digest(key, message, "sha256").hex()


def test_one_id_is_issued_and_checked_as_a_batch_s_are() -> None:
    issuer = ids()
    one = issuer.issue_one("hockey")
    assert one.split("~")[:2] == ["2.0.0", "hockey"]
    assert one not in issuer.issue(["hockey"])
    assert issuer.check(one, "space").label == "hockey"


def test_any_pod_of_any_version_with_the_key_accepts_an_id_and_counts_it_under_the_issuing_version() -> None:
    [issued] = ids(version="1.0.0").issue(["baseball"])
    claim = ids(version="2.0.0").check(issued, "hockey")
    assert (claim.version, claim.label) == ("1.0.0", "baseball")


def test_an_id_signed_with_another_key_is_refused_as_forged() -> None:
    [issued] = ids(key="another key of at least thirty-two bytes!").issue(["space"])
    with pytest.raises(ForgedPredictionId, match="forged or altered"):
        ids().check(issued, "space")


@pytest.mark.parametrize("part", range(4))
def test_an_id_altered_in_any_part_is_refused(part: int) -> None:
    [issued] = ids().issue(["space"])
    parts = issued.split("~")
    flipped = "1" if parts[3][0] == "0" else "0"  # the pod prefix is random: any first digit must change
    parts[part] = {0: "9.9.9", 1: "hockey", 2: f"{int(parts[2], 16) + 1:x}", 3: flipped + parts[3][1:]}[part]
    assert "~".join(parts) != issued
    with pytest.raises(ForgedPredictionId):
        ids().check("~".join(parts), "space")


def test_an_altered_signature_is_refused() -> None:
    [issued] = ids().issue(["space"])
    altered = issued[:-1] + ("0" if issued[-1] != "0" else "1")
    with pytest.raises(ForgedPredictionId):
        ids().check(altered, "space")


@pytest.mark.parametrize("text", ["", "x", "2.0.0~space", "a~b~c~d~e", "2.0.0~space~zz~ab~" + "0" * 64, "~" * 4])
def test_what_is_not_shaped_like_an_id_is_malformed(text: str) -> None:
    with pytest.raises(MalformedPredictionId):
        ids().check(text, "space")


def test_an_id_is_accepted_until_its_max_age_and_refused_after() -> None:
    clock = Clock()
    issuer = ids(clock=clock)
    young, old = issuer.issue(["space", "space"])
    clock.now += 30 * DAY
    issuer.check(young, "space")
    clock.now += 1
    with pytest.raises(ExpiredPredictionId, match="FEEDBACK_MAX_AGE_SECONDS"):
        issuer.check(old, "space")


def test_a_label_the_model_does_not_know_is_refused_and_the_id_stays_usable() -> None:
    issuer = ids()
    [issued] = issuer.issue(["space"])
    with pytest.raises(UnknownLabel, match="baseball, cryptography"):
        issuer.check(issued, "cooking")
    issuer.check(issued, "space")


def test_the_same_id_counts_once() -> None:
    issuer = ids()
    [issued] = issuer.issue(["space"])
    issuer.check(issued, "space")
    with pytest.raises(DuplicateFeedback):
        issuer.check(issued, "hockey")


def test_the_memory_of_ids_fed_back_is_bounded_forgetting_the_oldest() -> None:
    issuer = ids(remember=2)
    first, second, third = issuer.issue(["space"] * 3)
    for issued in (first, second, third):
        issuer.check(issued, "space")
    with pytest.raises(DuplicateFeedback):
        issuer.check(third, "space")
    issuer.check(first, "space")  # forgotten: counted again (the bound is FEEDBACK_SEEN_IDS)


def test_a_version_or_label_holding_the_separator_cannot_be_named_by_an_id() -> None:
    with pytest.raises(ValueError, match="may not contain"):
        PredictionIds(KEY, "2~0", LABEL_LIST, DAY, 10)


# ---- the key as a setting ----------------------------------------------------------------------


def test_a_short_key_is_refused_in_one_line_that_does_not_print_it() -> None:
    with pytest.raises(SettingError) as refused:
        Settings.from_env({"FEEDBACK_KEY": "hunter2-hunter2"})
    assert str(refused.value) == (
        "FEEDBACK_KEY is 15 bytes; it must be at least 32 (make one with: openssl rand -base64 48)"
    )


def test_the_key_is_read_from_the_environment_only_and_never_shown() -> None:
    settings = parse_command_line([], {"FEEDBACK_KEY": KEY})
    assert settings.feedback_key == KEY
    assert KEY not in repr(settings)
    with pytest.raises(SystemExit):
        parse_command_line(["--feedback-key", KEY], {})


# ---- over HTTP -----------------------------------------------------------------------------------


@pytest.fixture
def settings() -> Settings:
    return Settings(workers=1, log_format="text", feedback_key=KEY, revision="newsgroups-classifier-00007")


def feedback_counts(text: str) -> dict[tuple[str, ...], float]:
    found: dict[tuple[str, ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "textclf_feedback_total":
                labels = sample.labels
                found[(labels["model_version"], labels["predicted"], labels["actual"])] = sample.value
            elif sample.name == "textclf_feedback_rejected_total":
                found[("rejected", sample.labels["reason"])] = sample.value
    return found


async def test_every_answer_names_the_model_and_the_revision(client: TestClient) -> None:
    info = await (await client.get("/model")).json()
    for response in (
        await post(client, "/prediction", {"text": "the goalie stopped the puck"}),
        await post(client, "/prediction", {"text": 3}),
        await client.get("/metrics"),
        await client.get("/no/such/route"),
    ):
        assert response.headers["X-Model-Name"] == info["name"]
        assert response.headers["X-Model-Version"] == info["version"]
        assert response.headers["X-Revision"] == "newsgroups-classifier-00007"


async def test_every_prediction_carries_an_id_that_feedback_accepts(client: TestClient) -> None:
    version = (await (await client.get("/model")).json())["version"]
    one = await (await post(client, "/prediction", {"text": "the goalie stopped the puck"})).json()
    many = await (await post(client, "/predictions", {"texts": ["orbit of the moon", "the senate voted"]})).json()
    v2 = await (
        await post(
            client,
            "/v2/models/newsgroups-topic/infer",
            {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a pitcher and a bat"]}]},
        )
    ).json()
    issued = [one["prediction_id"], *many["prediction_ids"], *v2["parameters"]["prediction_ids"]]
    predicted = [one["label"], *many["labels"], *v2["outputs"][0]["data"]]
    assert len(set(issued)) == 4
    for prediction_id, label in zip(issued, predicted, strict=True):
        response = await post(client, "/feedback", {"prediction_id": prediction_id, "label": "politics"})
        assert response.status == 200
        assert await response.json() == {"model_version": version, "predicted": label, "actual": "politics"}
    counts = feedback_counts(await (await client.get("/metrics")).text())
    for label in set(predicted):
        assert counts[(version, label, "politics")] == predicted.count(label)
    assert counts[(version, "space", "hockey")] == 0  # every pair of this version is there from the start


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"prediction_id": "nonsense", "label": "space"}, 400, "malformed_id"),
        ({"prediction_id": "2.0.0~space~6b15f821~1~" + "0" * 64, "label": "space"}, 403, "bad_signature"),
        ("expired", 410, "expired"),
        ("unknown label", 422, "unknown_label"),
        ("twice", 409, "duplicate"),
    ],
)
async def test_feedback_that_is_not_counted_gets_a_clear_4xx_and_is_counted_by_reason(
    client: TestClient, body: object, status: int, reason: str
) -> None:
    [issued] = (await (await post(client, "/predictions", {"texts": ["the goalie"]})).json())["prediction_ids"]
    if body == "expired":
        body = {"prediction_id": ids(clock=Clock(0)).issue(["space"])[0], "label": "space"}
    elif body == "unknown label":
        body = {"prediction_id": issued, "label": "Hockey"}
    elif body == "twice":
        body = {"prediction_id": issued, "label": "hockey"}
        assert (await post(client, "/feedback", body)).status == 200
    response = await post(client, "/feedback", body)
    assert response.status == status
    answer = await response.json()
    assert answer["error"] == reason
    assert answer["detail"]
    counts = feedback_counts(await (await client.get("/metrics")).text())
    assert {r: counts[("rejected", r)] for r in FEEDBACK_REJECTIONS} == {
        r: 1.0 if r == reason else 0.0 for r in FEEDBACK_REJECTIONS
    }


@pytest.mark.parametrize("body", [{"label": "space"}, {"prediction_id": "x"}, {"prediction_id": 3, "label": "x"}, []])
async def test_a_body_without_the_two_strings_is_a_validation_error(client: TestClient, body: object) -> None:
    response = await post(client, "/feedback", body)
    assert response.status == 405
    assert (await response.json())["error"] == "validation_error"


@pytest.mark.parametrize("settings", [Settings(workers=1, log_format="text")])
async def test_without_a_key_no_id_is_issued_and_feedback_says_how_to_turn_it_on(client: TestClient) -> None:
    answer = await (await post(client, "/prediction", {"text": "the goalie stopped the puck"})).json()
    assert set(answer) == {"label"}
    assert "X-Revision" not in (await client.get("/model")).headers  # outside Knative: no revision
    response = await client.post("/feedback", data=json.dumps({"prediction_id": "x", "label": "space"}), headers=JSON)
    assert response.status == 404
    answer = await response.json()
    assert answer["error"] == "feedback_disabled"
    assert re.search(r"set FEEDBACK_KEY \(at least 32 bytes", answer["detail"])
