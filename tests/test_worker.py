"""The inference worker's batch call: runs of similar length, answered in the order given."""

from __future__ import annotations

import random

import numpy as np
import pytest

import train
from function.inference import session as onnx_session
from function.parallel import worker
from tests.helpers import ROOT
from tests.test_model_artifacts import EDGE_TEXTS


def padded_size(lengths: list[int], run: list[int]) -> int:
    return len(run) * max(lengths[i] for i in run)


@pytest.mark.parametrize("seed", range(20))
def test_length_runs_cover_every_text_once_shortest_first_within_the_budget(seed: int) -> None:
    rng = random.Random(seed)
    lengths = [int(rng.lognormvariate(7, 1.2)) for _ in range(rng.randint(1, 64))] + [0] * rng.randint(0, 3)

    runs = onnx_session.length_runs(lengths)

    order = [i for run in runs for i in run]
    assert sorted(order) == list(range(len(lengths)))
    assert [lengths[i] for i in order] == sorted(lengths)
    for run in runs:
        real = sum(lengths[i] for i in run)
        assert len(run) == 1 or padded_size(lengths, run) <= onnx_session.PADDING_BUDGET * real


def test_texts_of_one_length_stay_in_one_run() -> None:
    assert onnx_session.length_runs([500] * 32) == [list(range(32))]
    assert onnx_session.length_runs([0, 0, 0]) == [[0, 1, 2]]
    assert onnx_session.length_runs([]) == []


def test_a_batch_of_mixed_lengths_answers_each_text_in_the_order_given(session) -> None:  # type: ignore[no-untyped-def]
    texts = train.load_dataset(ROOT / "data/test.jsonl.gz").texts[:40] + EDGE_TEXTS
    random.Random(7).shuffle(texts)
    assert len(onnx_session.length_runs([len(t) for t in texts])) > 1, "the batch must be split to test the split"

    result = worker.predict(texts, session=session)

    singles = [worker.predict([t], session=session) for t in texts]
    assert result.labels == [s.labels[0] for s in singles]
    probabilities = np.frombuffer(result.probabilities, np.float32).reshape(len(texts), -1)
    expected = np.vstack([np.frombuffer(s.probabilities, np.float32) for s in singles])
    assert np.allclose(probabilities, expected, atol=1e-6)
    assert result.seconds > 0
