"""JSON ⇄ tensors for TensorFlow Serving's REST predict API, with NumPy only.

The rules are TF Serving's (its REST API documentation and `json_tensor.cc`):
requests come in row format (`"instances"`: a list, of objects when the
signature has several inputs) or columnar format (`"inputs"`: an object of
input name → nested list, or a plain value/list for a one-input signature);
strings are JSON strings or `{"b64": ...}` objects; the response is
`{"predictions": ...}` for row requests and `{"outputs": ...}` for columnar
ones, with the output names left out when the signature has one output.
Error messages follow TF Serving's wording so they read the same whichever
server answered. One deliberate difference: unknown names in an `"inputs"`
object are an error here (TF Serving ignores them), since they are nearly
always a typo of a real input.
"""

from __future__ import annotations

import base64
import binascii
import json
import math

import numpy as np

from tfqa.core.squad import find_lone_surrogate
from tfqa.export.names import SERVING_DEFAULT
from tfqa.rest.http import RequestError
from tfqa.serving.limits import check_instance_count

MAX_RANK = 32
_INT_RANGES = {f"{sign}int{bits}": ((0, 2**bits - 1) if sign else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1))
               for sign in ("", "u") for bits in (8, 16, 32, 64)}
# Largest magnitude, and largest exactly representable integer, per float type.
_FLOATS = {"float16": (65504.0, 2**11), "float32": (float(np.finfo(np.float32).max), 2**24),
           "float64": (float(np.finfo(np.float64).max), 2**53)}


def shown(value, limit: int = 120) -> str:
    """A JSON value as text for error messages, cut to `limit` characters."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (RecursionError, ValueError):
        text = f"<a {type(value).__name__} nested too deeply to show>"
    return text if len(text) <= limit else text[:limit] + "..."


def _json_type(value) -> str:
    names = {type(None): "Null", dict: "Object", list: "Array", str: "String"}
    if isinstance(value, bool):
        return str(value)
    return names.get(type(value), "Number")


def _is_b64(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _is_named_object(value) -> bool:
    return isinstance(value, dict) and not _is_b64(value)


def _type_error(value, dtype: str) -> RequestError:
    return RequestError(f"JSON Value: {shown(value)} Type: {_json_type(value)} is not of expected type: {dtype}")


def _leaf(value, dtype: str):
    """One scalar of a tensor, checked against `dtype` as TF Serving does (no silent coercion)."""
    if dtype == "string":
        if isinstance(value, str):
            return utf8(value)
        if _is_b64(value):
            try:
                return base64.b64decode(value["b64"], validate=True)
            except (binascii.Error, ValueError):
                raise RequestError("Unable to base64 decode") from None
        raise _type_error(value, dtype)
    if dtype == "bool":
        if isinstance(value, bool):
            return value
        raise _type_error(value, dtype)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _type_error(value, dtype)
    if dtype in _INT_RANGES:
        low, high = _INT_RANGES[dtype]
        if not isinstance(value, int) or not low <= value <= high:
            raise _type_error(value, dtype)
        return value
    if dtype in _FLOATS:
        largest, exact = _FLOATS[dtype]
        lossy = abs(value) > exact if isinstance(value, int) else math.isfinite(value) and abs(value) > largest
        if lossy:
            raise RequestError(f"Cannot convert JSON value: {shown(value)} to {dtype} without loss of precision.")
        return float(value)
    raise RequestError(f"Conversion of JSON Value: {shown(value)} to type: {dtype} is not supported", 501)


def utf8(text: str) -> bytes:
    """`text` as UTF-8, or RequestError for a lone surrogate (a JSON "\\ud800" escape with no pair).

    Such a string is not Unicode text: encoding it "surrogatepass" gives bytes the
    model reads as three U+FFFD, shifting every character offset after it. The
    rule is tfqa's for every input surface: refuse, naming the place (here the
    element and input the caller adds); raw bytes go as {"b64": ...}.
    """
    at = find_lone_surrogate(text)
    if at < 0:
        return text.encode("utf-8")
    raise RequestError(f"the string has a lone surrogate \\u{ord(text[at]):04x} at character {at}, "
                       "which is not Unicode text (characters beyond U+FFFF are a \\ud83d\\ude00-style "
                       "pair; send bytes as {\"b64\": ...})")


def _fill(value, level: int, shape: list[int], dtype: str, out: list) -> None:
    if not isinstance(value, list):
        if level != len(shape):
            raise RequestError(f"JSON Value: {shown(value)} found at incorrect level: {level + 1} in the JSON DOM. "
                               f"Expected at level: {len(shape)}")
        out.append(_leaf(value, dtype))
        return
    if level >= len(shape):
        raise RequestError(f"Encountered list at unexpected level: {level} expected < {len(shape)}")
    if len(value) != shape[level]:
        raise RequestError(f"Encountered list at unexpected size: {len(value)} at level: {level} "
                           f"expected size: {shape[level]}")
    for item in value:
        _fill(item, level + 1, shape, dtype, out)


def to_array(value, dtype: str) -> np.ndarray:
    """A dense array from a JSON value (scalar or nested lists); the shape is read off the first elements."""
    shape, probe = [], value
    while isinstance(probe, list):
        shape.append(len(probe))
        probe = probe[0] if probe else None
        if len(shape) > MAX_RANK:  # NumPy holds at most 64 dimensions; no signature takes anywhere near 32
            raise RequestError(f"a tensor nested more than {MAX_RANK} lists deep; no signature takes such a rank")
    flat: list = []
    _fill(value, 0, shape, dtype, flat)
    if dtype != "string" and dtype not in _INT_RANGES and dtype not in _FLOATS and dtype != "bool":
        raise RequestError(f"Conversion of JSON values to type: {dtype} is not supported", 501)
    array = np.empty(len(flat), dtype=object if dtype == "string" else np.dtype(dtype))
    array[:] = flat
    return array.reshape(shape)


def _number(text: str):
    # As RapidJSON (TF Serving's parser) reads integers: 64-bit when they fit, else a double;
    # Python's int() refuses more than 4,300 digits with a ValueError and is slow long before.
    if len(text.lstrip("-")) <= 20:
        return int(text)
    value = float(text)
    if math.isinf(value):
        raise RequestError(f"JSON Parse error: Number too big to be stored in double: {text[:20]}... "
                           f"({len(text)} digits)")
    return value


def parse_json_object(body: bytes) -> dict:
    """The request body as a JSON object (NaN and Infinity allowed, as in TF Serving)."""
    if not body.strip():
        raise RequestError("JSON Parse error: The document is empty")
    try:
        doc = json.loads(body.decode("utf-8"), parse_int=_number)
    except UnicodeDecodeError as e:
        raise RequestError(f"JSON Parse error: Invalid encoding in string. at offset: {e.start}") from None
    except json.JSONDecodeError as e:
        raise RequestError(f"JSON Parse error: {e.msg} at offset: {e.pos}") from None
    except RecursionError:
        raise RequestError("JSON Parse error: the document is nested too deeply") from None
    if not isinstance(doc, dict):
        raise RequestError(f"JSON Value: {shown(doc)} Is not object")
    return doc


def signature_name_of(doc: dict, default: str = SERVING_DEFAULT) -> str:
    """The request's `signature_name` (the default signature when absent or empty)."""
    name = doc.get("signature_name", "")
    if not isinstance(name, str):
        raise RequestError(f"JSON Value: {shown(doc)} not formatted correctly. "
                           "'signature_name' key must be a string value.")
    return name or default


def decode_inputs(doc: dict, dtypes: dict[str, str]) -> tuple[str, dict[str, np.ndarray]]:
    """("row" | "columnar", {input name: array}) from a predict request, given the signature's input dtypes."""
    if "instances" in doc and "inputs" in doc:
        raise RequestError(f"JSON Value: {shown(doc)} Not formatted correctly expecting only one of 'inputs' or "
                           "'instances' keys to exist")
    if "instances" in doc:
        return "row", _rows_to_arrays(doc["instances"], dtypes)
    if "inputs" in doc:
        return "columnar", _columns_to_arrays(doc["inputs"], dtypes)
    raise RequestError("Missing 'inputs' or 'instances' key")


def check_batch_size(doc: dict, arrays: dict[str, np.ndarray] | None, limit: int) -> None:
    """Refuses requests of more than `limit` instances, as TF Serving refuses batches over its maximum.

    Call it with `arrays=None` before decoding (row requests are counted from the
    JSON list, so 10,000 instances are refused before any of them is converted),
    then with the decoded arrays (columnar requests: their first dimension).
    The refusal is `tfqa.serving.limits.check_instance_count`'s (400).
    """
    if arrays is None:
        instances = doc.get("instances")
        counts = [len(instances)] if isinstance(instances, list) else []
    else:
        counts = [array.shape[0] for array in arrays.values() if array.ndim]
    if counts:
        check_instance_count(max(counts), limit)


def _rows_to_arrays(instances, dtypes: dict[str, str]) -> dict[str, np.ndarray]:
    if not isinstance(instances, list):
        raise RequestError("Expecting 'instances' to be an list/array")
    if not instances:
        raise RequestError("No values in 'instances' array")
    names = sorted(dtypes)
    as_objects = _is_named_object(instances[0])
    if not as_objects and len(names) > 1:
        raise RequestError("instances is a plain list, but expecting list of objects as multiple input tensors "
                           f"required as per tensorinfo_map (inputs: {', '.join(names)})")
    rows: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for i, item in enumerate(instances):
        if as_objects != _is_named_object(item):
            got, want = ("list", "object") if as_objects else ("object", "value/list")
            raise RequestError(f"Expecting {want} but got {got} at item {i} of input list")
        if as_objects and set(item) != set(names):
            raise RequestError(f"Failed to process element: {i} of 'instances' list. JSON object: {shown(item)} "
                               f"keys must be equal to: {','.join(names)}")
        for name in names:
            where = f"Failed to process element: {i}" + (f" key: {name}" if as_objects else "")
            try:
                array = to_array(item[name] if as_objects else item, dtypes[name])
            except RequestError as e:
                raise RequestError(f"{where} of 'instances' list. Error: {e}", e.status) from None
            if rows[name] and array.shape != rows[name][0].shape:
                raise RequestError(f"{where} of 'instances' list. Error: Expecting shape "
                                   f"{list(rows[name][0].shape)} but got: {list(array.shape)}")
            rows[name].append(array)
    return {name: np.stack(arrays) for name, arrays in rows.items()}


def _columns_to_arrays(inputs, dtypes: dict[str, str]) -> dict[str, np.ndarray]:
    names = sorted(dtypes)
    if not _is_named_object(inputs):
        if len(names) > 1:
            raise RequestError("inputs is a plain value/list, but expecting an object as multiple input tensors "
                               f"required as per tensorinfo_map (inputs: {', '.join(names)})")
        return {names[0]: to_array(inputs, dtypes[names[0]])}
    unknown = sorted(set(inputs) - set(names))
    if unknown:
        raise RequestError(f"Unknown named input: {', '.join(unknown)} in 'inputs' object; the signature's inputs "
                           f"are: {', '.join(names)}")
    for name in names:
        if name not in inputs:
            raise RequestError(f"Missing named input: {name} in 'inputs' object.")
    arrays = {}
    for name in names:
        try:
            arrays[name] = to_array(inputs[name], dtypes[name])
        except RequestError as e:
            raise RequestError(f"input '{name}' of 'inputs' object: {e}", e.status) from None
    return arrays


def _json_values(array: np.ndarray, as_bytes: bool):
    """Nested lists of JSON-ready values: UTF-8 strings as text, other bytes as {"b64": ...}."""
    if array.dtype == object:
        def text(value: bytes):
            if not as_bytes:
                try:
                    return value.decode("utf-8")
                except UnicodeDecodeError:
                    pass
            return {"b64": base64.b64encode(value).decode("ascii")}
        flat = np.empty(array.size, dtype=object)
        flat[:] = [text(v) for v in array.ravel()]
        return flat.reshape(array.shape).tolist()
    if array.dtype in (np.float16, np.float32):
        # The shortest text that reads back as the same float32 (TF Serving does the same),
        # not the float64 widening with its noise digits (0.2 → 0.20000000298023224).
        flat = [float(str(v)) for v in array.ravel()]
        return np.array(flat, dtype=np.float64).reshape(array.shape).tolist()
    return array.tolist()


def encode_outputs(outputs: dict[str, np.ndarray], request_format: str) -> dict:
    """The predict response for `outputs` in the request's format."""
    names = sorted(outputs)
    values = {name: _json_values(outputs[name], name.endswith("_bytes")) for name in names}
    if request_format == "columnar":
        return {"outputs": values[names[0]] if len(names) == 1 else values}
    batch = None
    for name in names:
        if outputs[name].ndim == 0:
            raise RequestError(f"Tensor name: {name} has no shape information ")
        if batch is not None and outputs[name].shape[0] != batch:
            raise RequestError(f"Tensor name: {name} has inconsistent batch size: {outputs[name].shape[0]} "
                               f"expecting: {batch}")
        batch = outputs[name].shape[0]
    if len(names) == 1:
        return {"predictions": values[names[0]]}
    return {"predictions": [{name: values[name][i] for name in names} for i in range(batch)]}


def dumps(obj) -> bytes:
    """Compact UTF-8 JSON; NaN and ±Infinity are written as TF Serving writes them."""
    try:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates echoed from a request: escape them
        return json.dumps(obj, separators=(",", ":")).encode("ascii")
