"""The Open Inference Protocol (KServe V2) over REST: an inference request to texts, predictions to tensors.

The model has one input, ``text`` (BYTES, shape ``[N]`` or ``[N, 1]``), and two outputs, ``label``
(BYTES ``[N]``) and ``probabilities`` (FP32 ``[N, len(labels)]``, in the order of ``/model``'s
labels); a third, ``explanation`` (BYTES ``[N]``, each a JSON explanation), comes when asked for by
name or with the request parameter ``explain: true``. Tensors travel as JSON ``data``, or in the
binary tensor data extension (``function.api.binary_tensors``).
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from function.api.binary_tensors import bytes_elements, bytes_tensor, fp32_tensor
from function.api.explanations import explanation_json
from function.api.validation import check_text
from function.errors import InvalidInput
from function.inference.classifier import Prediction
from function.jsonio import dumps
from function.model_info import INPUT, OUTPUTS

#: Protocol extensions this server implements (``GET /v2``).
EXTENSIONS = ("binary_tensor_data",)
LABEL, PROBABILITIES = OUTPUTS
EXPLANATION = "explanation"
REQUESTABLE = (*OUTPUTS, EXPLANATION)


@dataclass(frozen=True, slots=True)
class InferRequest:
    """What an inference request asks for: its texts, which outputs, and in which encoding."""

    id: str | None
    texts: list[str]
    #: Requested outputs in order, each with whether it goes back as binary data.
    outputs: tuple[tuple[str, bool], ...]

    @property
    def explain(self) -> bool:
        return any(name == EXPLANATION for name, _ in self.outputs)


def model_metadata(info: Mapping[str, Any]) -> dict[str, Any]:
    """The model metadata object of ``GET /v2/models/{name}``."""
    return {
        "name": info["name"],
        "versions": [info["version"]],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": INPUT, "datatype": "BYTES", "shape": [-1]}],
        "outputs": [
            {"name": LABEL, "datatype": "BYTES", "shape": [-1]},
            {"name": PROBABILITIES, "datatype": "FP32", "shape": [-1, len(info["labels"])]},
        ],
        "parameters": {"labels": list(info["labels"])},
    }


def parse_infer_request(header: Any, binary: memoryview, max_items: int) -> InferRequest:
    """The request's texts and requested outputs; ``InvalidInput`` naming the field at fault."""
    if not isinstance(header, dict):
        raise InvalidInput("the inference request must be a JSON object", reason="not_object")
    request_id = header.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput("'id' must be a string", reason="wrong_type")
    parameters = _object(header.get("parameters"), "parameters")
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise InvalidInput(f"'inputs' must be an array of one tensor, named {INPUT!r}", reason="bad_tensor")
    tensor = inputs[0]
    if tensor.get("name") != INPUT:
        raise InvalidInput(f"the input tensor must be named {INPUT!r}, not {tensor.get('name')!r}", reason="bad_tensor")
    texts = _texts(tensor, binary, max_items)
    binary_default = _flag(parameters, "binary_data_output", "parameters")
    outputs = _outputs(header.get("outputs"), binary_default)
    if _flag(parameters, "explain", "parameters") and all(name != EXPLANATION for name, _ in outputs):
        outputs += ((EXPLANATION, binary_default),)
    return InferRequest(request_id, texts, outputs)


def infer_response(
    request: InferRequest,
    info: Mapping[str, Any],
    predictions: Sequence[Prediction],
    prediction_ids: Sequence[str] | None = None,
) -> tuple[bytes, int | None]:
    """The response body, and the JSON part's length when binary tensors follow it (else None).

    ``prediction_ids`` (one per text, for ``POST /feedback``) go in the response's ``parameters``.
    """
    n, n_labels = len(predictions), len(info["labels"])
    outputs, blobs = [], []
    for name, binary in request.outputs:
        if name in (LABEL, EXPLANATION):
            tensor: dict[str, Any] = {"name": name, "datatype": "BYTES", "shape": [n]}
            strings = (
                [p.label for p in predictions]
                if name == LABEL
                else [dumps(explanation_json(p.label, p.explanation)).decode() for p in predictions]
            )
            blob = bytes_tensor(strings) if binary else None
            data: list[Any] = strings
        else:
            tensor = {"name": PROBABILITIES, "datatype": "FP32", "shape": [n, n_labels]}
            values = array("f")
            for p in predictions:
                values.extend(p.probabilities)
            blob = fp32_tensor(values) if binary else None
            data = values.tolist()
        if blob is None:
            tensor["data"] = data
        else:
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        outputs.append(tensor)
    answer: dict[str, Any] = {"model_name": info["name"], "model_version": info["version"]}
    if request.id is not None:
        answer["id"] = request.id
    if prediction_ids is not None:
        answer["parameters"] = {"prediction_ids": list(prediction_ids)}
    answer["outputs"] = outputs
    head = dumps(answer)
    if not blobs:
        return head, None
    return b"".join([head, *blobs]), len(head)


def _texts(tensor: Mapping[str, Any], binary: memoryview, max_items: int) -> list[str]:
    datatype, shape = tensor.get("datatype"), tensor.get("shape")
    if datatype != "BYTES":
        raise InvalidInput(f"the input {INPUT!r} must have datatype BYTES, not {datatype!r}", reason="bad_tensor")
    if (
        not isinstance(shape, list)
        or not 1 <= len(shape) <= 2
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
        or (len(shape) == 2 and shape[1] != 1)
    ):
        raise InvalidInput(f"the input {INPUT!r} must have shape [N] or [N, 1], not {shape!r}", reason="bad_tensor")
    n = shape[0]
    if not 1 <= n <= max_items:
        raise InvalidInput(f"the input {INPUT!r} must hold 1 to {max_items} texts, not {n}", reason="batch_size")
    size = _object(tensor.get("parameters"), "inputs[0].parameters").get("binary_data_size")
    if size is not None:
        if "data" in tensor:
            raise InvalidInput("an input has 'data' or 'binary_data_size', not both", reason="bad_tensor")
        elements = bytes_elements(binary, size, INPUT)
    else:
        data = tensor.get("data")
        if not isinstance(data, list):
            raise InvalidInput(f"the input {INPUT!r} needs 'data', an array of strings", reason="missing_field")
        elements = _flatten(data)
        if len(binary):
            raise InvalidInput("binary data follows the JSON, but no input declares it", reason="bad_tensor")
    if len(elements) != n:
        raise InvalidInput(f"the input {INPUT!r} has shape {shape} but {len(elements)} elements", reason="bad_tensor")
    return [check_text(text, f"inputs[0].data[{i}]") for i, text in enumerate(elements)]


def _flatten(data: list[Any]) -> list[Any]:
    """Row-major elements of ``data``, given flat or nested one level ([[text], [text]])."""
    if data and all(isinstance(row, list) for row in data):
        return [element for row in data for element in row]
    return data


def _outputs(requested: Any, binary_default: bool) -> tuple[tuple[str, bool], ...]:
    if requested is None:
        return tuple((name, binary_default) for name in OUTPUTS)
    if not isinstance(requested, list) or not requested:
        raise InvalidInput("'outputs' must be a non-empty array of {'name': ...} objects", reason="bad_tensor")
    chosen: list[tuple[str, bool]] = []
    for i, output in enumerate(requested):
        if not isinstance(output, dict) or output.get("name") not in REQUESTABLE:
            name = output.get("name") if isinstance(output, dict) else output
            raise InvalidInput(f"outputs[{i}] must name one of {list(REQUESTABLE)}, not {name!r}", reason="bad_tensor")
        where = f"outputs[{i}].parameters"
        binary = _flag(_object(output.get("parameters"), where), "binary_data", where, binary_default)
        if any(name == output["name"] for name, _ in chosen):
            raise InvalidInput(f"outputs[{i}] names {output['name']!r} twice", reason="bad_tensor")
        chosen.append((output["name"], binary))
    return tuple(chosen)


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"'{where}' must be an object", reason="wrong_type")
    return value


def _flag(parameters: Mapping[str, Any], name: str, where: str, default: bool = False) -> bool:
    value = parameters.get(name, default)
    if not isinstance(value, bool):
        raise InvalidInput(f"'{where}.{name}' must be true or false", reason="wrong_type")
    return value
