"""SavedModel versions of one export directory, loaded for serving as TensorFlow Serving loads them.

An export base directory (`export/tfqa/`, layout: `tfqa.export.versions`)
holds one subdirectory per version, named by an integer (`1/`, `2/`, ...);
anything else (`.tmp-...` left by an export in progress) is ignored, as TF
Serving ignores it. Models are read only
through their signatures (input/output names, dtypes and shapes), so any
SavedModel with a `serving_default` signature is served unchanged. TensorFlow is
imported only when a model is loaded, so checking a directory is instant.
Which versions a `Model` serves is its version policy's (`tfqa.serving.model_config`);
`tfqa.serving.live` changes them while requests run.

Errors here know nothing of HTTP or gRPC: a request the model cannot serve is a
`ServingFailure` with TensorFlow's canonical error code (named in
`tfqa.serving.errors`), which each front end maps to its status (REST:
`tfqa.rest.http.http_status`).
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tfqa.export.names import SERVING_DEFAULT
from tfqa.export.versions import WARMUP_FILE, is_version_name, version_dirs
from tfqa.serving.errors import Code, ModelDirError, ServingFailure
from tfqa.serving.model_config import ALL, LATEST, VersionPolicy


def find_versions(base_dir: str | os.PathLike) -> dict[int, Path]:
    """{version: directory} of the integer-named subdirectories of an export base directory."""
    base = Path(base_dir)
    if not base.exists():
        raise ModelDirError(f"{base}: no such directory (expected an export base directory such as export/tfqa "
                            "holding version subdirectories 1/, 2/, ...)")
    if not base.is_dir():
        raise ModelDirError(f"{base}: not a directory")
    versions = version_dirs(base)
    if not versions:
        hint = (f"; it is itself a SavedModel: pass its parent {base.resolve().parent} instead"
                if (base / "saved_model.pb").exists() else "")
        raise ModelDirError(f"{base}: no version subdirectory (1/, 2/, ... each holding saved_model.pb){hint}")
    return versions


@dataclass
class Signature:
    """One signature of a loaded version: its function and its inputs' dtypes and shapes."""

    name: str
    function: object
    dtypes: dict[str, str]
    shapes: dict[str, tuple | None]


@dataclass
class Servable:
    """One loaded version of the model."""

    version: int
    path: Path
    signatures: dict[str, Signature]
    signature_def_json: dict
    loaded: object = field(repr=False, default=None)  # keeps the variables the functions use alive
    # Requests running on this version; a version leaving the policy is unloaded once it is 0.
    users: int = field(default=0, repr=False, compare=False)
    _idle: threading.Condition = field(default_factory=threading.Condition, repr=False, compare=False)

    def enter(self) -> None:
        """One more request runs on this version (see `Model.serving`)."""
        with self._idle:
            self.users += 1

    def leave(self) -> None:
        with self._idle:
            self.users -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Waits until no request runs on this version; False if some still do after `timeout` seconds."""
        with self._idle:
            return self._idle.wait_for(lambda: self.users == 0, timeout)

    def signature(self, name: str) -> Signature:
        """The signature called `name`, or TF Serving's error for an unknown one."""
        if name not in self.signatures:
            raise ServingFailure(f'Serving signature name: "{name}" not found in signature def')
        return self.signatures[name]

    def run(self, signature: Signature, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Calls the signature on NumPy inputs; TF errors become ServingFailures with their error code."""
        import tensorflow as tf

        try:
            tensors = {name: tf.constant(array, dtype=signature.dtypes[name]) for name, array in arrays.items()}
            outputs = signature.function(**tensors)
            return {name: tensor.numpy() for name, tensor in outputs.items()}
        except tf.errors.OpError as e:
            raise ServingFailure(_one_line(e.message), e.error_code) from None


def _one_line(message: str) -> str:
    """A TF op error without the eager-mode boilerplate lines around the actual problem."""
    noise = ("Graph execution error", "Detected at node", "<stack traces unavailable>")
    lines = [line.strip() for line in message.splitlines() if line.strip() and not line.strip().startswith(noise)]
    return " ".join(lines) or message


def load_servable(version: int, path: Path) -> Servable:
    """Loads one version directory (tag `serve`, as TF Serving does) and replays its warmup requests."""
    import tensorflow as tf
    from google.protobuf import json_format
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow_serving.apis import get_model_metadata_pb2

    try:  # registers the tensorflow-text ops (WordPiece) raw-text exports use; TF Serving ships them built in
        import tensorflow_text  # noqa: F401
    except ImportError:
        pass
    pb = path / "saved_model.pb"
    if not pb.exists():
        raise ModelDirError(f"{path}: no saved_model.pb (not a SavedModel version directory)")
    saved_model = saved_model_pb2.SavedModel()
    try:
        saved_model.ParseFromString(pb.read_bytes())
        loaded = tf.saved_model.load(str(path), tags=["serve"])
    except Exception as e:  # noqa: BLE001 - any load failure is reported as one line
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ModelDirError(f"{path}: cannot load the SavedModel: {first_line}") from None
    meta_graph = next(g for g in saved_model.meta_graphs if "serve" in g.meta_info_def.tags)
    signature_defs = get_model_metadata_pb2.SignatureDefMap(signature_def=meta_graph.signature_def)
    signatures = {}
    for name, function in loaded.signatures.items():
        specs = function.structured_input_signature[1]
        signatures[name] = Signature(
            name, function, {k: spec.dtype.name for k, spec in specs.items()},
            {k: None if spec.shape.rank is None else tuple(spec.shape.as_list()) for k, spec in specs.items()})
    if SERVING_DEFAULT not in signatures:
        raise ModelDirError(f"{path}: the SavedModel has no {SERVING_DEFAULT} signature "
                            f"(signatures: {', '.join(sorted(signatures)) or 'none'})")
    servable = Servable(version, path, signatures, json_format.MessageToDict(
        signature_defs, always_print_fields_with_no_presence=True, preserving_proto_field_name=True), loaded)
    _replay_warmup(servable)
    return servable


def _replay_warmup(servable: Servable) -> None:
    """Replays the predict requests of assets.extra/tf_serving_warmup_requests.

    As in TF Serving, a failing warmup request fails the load: it would fail in production too.
    """
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = servable.path / WARMUP_FILE
    if not path.exists():
        return
    for i, record in enumerate(tf.data.TFRecordDataset(str(path)).as_numpy_iterator()):
        log = prediction_log_pb2.PredictionLog.FromString(record)
        if not log.HasField("predict_log"):
            continue  # classify/regress warmups need Example-based signatures, which this server does not serve
        request = log.predict_log.request
        try:
            signature = servable.signature(request.model_spec.signature_name or SERVING_DEFAULT)
            if set(request.inputs) != set(signature.dtypes):
                raise ValueError(f"inputs {', '.join(sorted(request.inputs))} do not match the signature's "
                                 f"{', '.join(sorted(signature.dtypes))}")
            servable.run(signature, {k: tf.make_ndarray(v) for k, v in request.inputs.items()})
        except (ServingFailure, TypeError, ValueError) as e:
            raise ModelDirError(f"{path}: warmup request {i} failed: {e}") from None


class Model:
    """The served versions of one model, its version labels and TF Serving's status/metadata answers.

    `servables` is replaced whole when versions come and go (`tfqa.serving.live`),
    never changed in place, so a reader holds a consistent snapshot without a lock.
    """

    def __init__(self, name: str, base_dir: Path, servables: dict[int, Servable], labels: dict[str, int],
                 policy: VersionPolicy = LATEST):
        self.name, self.base_dir, self.labels, self.policy = name, base_dir, labels, policy
        self.servables = dict(sorted(servables.items()))
        self._lock = threading.Lock()

    @property
    def latest(self) -> Servable:
        """The newest loaded version (what requests without /versions/ or /labels/ get)."""
        return self.servables[max(self.servables)]

    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The servable a request names, with TF Serving's errors for unknown names, versions and labels."""
        servables = self.servables
        if label is not None and name == self.name:
            if label not in self.labels:
                raise ServingFailure(f"Unrecognized servable version label: {label}")
            version = self.labels[label]
        if name != self.name or not servables or (version is not None and version not in servables):
            wanted = f"Latest({name})" if version is None else f"Specific({name}, {version})"
            raise ServingFailure(f"Servable not found for request: {wanted}", Code.NOT_FOUND)
        return servables[max(servables) if version is None else version]

    @contextlib.contextmanager
    def serving(self, name: str, version: int | None = None, label: str | None = None):
        """`resolve`, holding the version loaded until the block ends (a request's whole model call)."""
        with self._lock:  # not unloaded between being found and being counted
            servable = self.resolve(name, version, label)
            servable.enter()
        try:
            yield servable
        finally:
            servable.leave()

    def replace_versions(self, add: dict[int, Servable], remove: set[int]) -> list[Servable]:
        """Serves the versions in `add` and stops serving those in `remove`; returns the removed servables.

        Requests already running on a removed version finish on it (`Servable.wait_idle`).
        """
        with self._lock:
            gone = [self.servables[v] for v in sorted(remove) if v in self.servables]
            kept = {v: s for v, s in self.servables.items() if v not in remove}
            self.servables = dict(sorted({**kept, **add}.items()))
        return gone

    def status(self, name: str, version: int | None = None, label: str | None = None) -> dict:
        """GetModelStatusResponse as JSON: every loaded version, newest first, or the one asked for."""
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_status_pb2

        if name != self.name:
            raise ServingFailure(f"Could not find any versions of model {name}", Code.NOT_FOUND)
        if label is not None:
            version = self.resolve(name, label=label).version
        servables = self.servables
        if version is not None and version not in servables:
            raise ServingFailure(f"Could not find version {version} of model {name}", Code.NOT_FOUND)
        response = get_model_status_pb2.GetModelStatusResponse()
        entry_state = get_model_status_pb2.ModelVersionStatus.AVAILABLE  # all served versions are loaded
        for v in sorted(servables, reverse=True) if version is None else [version]:
            entry = response.model_version_status.add(version=v, state=entry_state)
            entry.status.SetInParent()  # error_code OK, error_message "": printed, as TF Serving prints them
        return json_format.MessageToDict(response, always_print_fields_with_no_presence=True,
                                         preserving_proto_field_name=True)

    def metadata(self, name: str, version: int | None = None, label: str | None = None) -> dict:
        """GetModelMetadataResponse as TF Serving's REST API writes it (the signature_def map unpacked)."""
        from google.protobuf import json_format
        from tensorflow_serving.apis import model_pb2

        servable = self.resolve(name, version, label)
        spec = model_pb2.ModelSpec(name=self.name)
        spec.version.value = servable.version
        return {"model_spec": json_format.MessageToDict(spec, always_print_fields_with_no_presence=True,
                                                        preserving_proto_field_name=True),
                "metadata": {"signature_def": servable.signature_def_json}}


def parse_labels(specs: list[str]) -> dict[str, int]:
    """{label: version} from `stable=1`-style strings (versions are int64, as in TF Serving)."""
    labels = {}
    for spec in specs:
        label, sep, version = spec.partition("=")
        version = version.strip()
        if not sep or not re.fullmatch(r"[^/:=\s]+", label) or not is_version_name(version):
            raise ModelDirError(f"label '{_cut(spec)}': expected LABEL=VERSION, e.g. stable=1")
        if len(version) > 19 or int(version) >= 2**63:  # int() of 4,300+ digits is a ValueError
            raise ModelDirError(f"label '{_cut(spec)}': version {_cut(version, 20)} is beyond int64, so no export "
                                "has it")
        labels[label] = int(version)
    return labels


def _cut(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def check_model_name(name: str | None) -> None:
    """ModelDirError for a model name no /v1/models/NAME URL can reach (TF Serving's URLs stop at / and :)."""
    if name is not None and not re.fullmatch(r"[^/:\s?#%]+", name):
        raise ModelDirError(f"model name '{_cut(name)}': a model name cannot be empty or hold '/', ':', '?', '#', "
                            "'%' or spaces (no URL would reach it); pick another with --name")


def release_memory() -> None:
    """Hands memory freed by a big request back to the OS (glibc keeps it otherwise).

    TensorFlow's CPU tensors come from malloc; after a 200 KB context the
    server's resident size stayed ~2 GB higher for good (freed, but kept in
    malloc's arenas). `malloc_trim` returns those pages; elsewhere it is a no-op.
    """
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def load_model(base_dir: str | os.PathLike, name: str | None = None, *, all_versions: bool = False,
               labels: dict[str, int] | None = None, policy: VersionPolicy | None = None) -> Model:
    """Loads the versions of an export directory its `policy` selects (default: the newest; `all_versions`:
    all of them) plus labelled ones.

    TF Serving's default version policy serves only the newest version; labels
    must point at versions that are loaded, so labelled versions are loaded too.
    """
    base = Path(base_dir)
    versions = find_versions(base)
    labels = dict(labels or {})
    for label, version in labels.items():
        if version not in versions:
            raise ModelDirError(f"{base}: label {label} points at version {version}, which is not there "
                                f"(versions: {', '.join(map(str, versions))})")
    name = name or base.resolve().name
    check_model_name(name)
    policy = policy or (ALL if all_versions else LATEST)
    wanted = policy.select(versions) | set(labels.values())
    if not wanted:
        raise ModelDirError(f"{base}: none of the versions there ({', '.join(map(str, versions))}) is in the version "
                            f"policy {policy}")
    servables = {v: load_servable(v, versions[v]) for v in sorted(wanted)}
    return Model(name, base, servables, labels, policy)
