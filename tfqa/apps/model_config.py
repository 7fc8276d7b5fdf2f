"""The models `tfqa model-server` serves: TF Serving's `--model_config_file` or `--model_name`/`--model_base_path`.

A minimal reader of the `ModelServerConfig` text proto (the `model_config_list`
that `serve/models.config` holds): per model its name, base path, version
policy (`latest { num_versions }`, `all {}`, `specific { versions }`) and
`version_labels`, with TF Serving's rule that a label must name a served
version. A single `--model_name`/`--model_base_path` is the one-entry config
TF Serving builds from them (the newest version). Versions are loaded once, at
start; issue 23's `tfqa.serving` layer reads the same file with live reloads.

`Models` puts several loaded models behind the one-model interface both front
ends call (`resolve`, `status`, `metadata` by name), so an unknown name gets
the same TF Serving error as with one model.
"""

from __future__ import annotations

import os
from pathlib import Path

from tfqa.core.errors import TfqaError
from tfqa.serving.servables import Model, ModelDirError, check_model_name, find_versions, load_servable
from tfqa.serving.metrics import ServingMetrics


class ModelConfigError(TfqaError, ValueError):
    """An unreadable or inconsistent model config file; one line naming the file and the problem."""


class Models:
    """Loaded models by name, answering as one `Model` does (see the module docstring)."""

    def __init__(self, models: list[Model]):
        self.by_name = {model.name: model for model in models}
        self.name = models[0].name  # the model REST's "not found" hint names

    def _model(self, name: str) -> Model:
        return self.by_name.get(name) or self.by_name[self.name]  # a wrong name: that model's not-found error

    def resolve(self, name: str, version: int | None = None, label: str | None = None):
        """The servable a request names (see `Model.resolve`)."""
        return self._model(name).resolve(name, version, label)

    def status(self, name: str, version: int | None = None, label: str | None = None) -> dict:
        """GetModelStatusResponse as JSON (see `Model.status`)."""
        return self._model(name).status(name, version, label)

    def metadata(self, name: str, version: int | None = None, label: str | None = None) -> dict:
        """GetModelMetadataResponse as REST writes it (see `Model.metadata`)."""
        return self._model(name).metadata(name, version, label)

    def describe(self) -> str:
        """'tfqa (versions 1, 2), other (version 1)' for the start-up line."""
        return ", ".join(f"{name} (version{'s' if len(m.servables) > 1 else ''} {', '.join(map(str, m.servables))})"
                         for name, m in self.by_name.items())


def read_model_config(path: str | os.PathLike):
    """The ModelServerConfig proto of a text-proto file."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    try:
        text = open(path, encoding="utf-8").read()
    except (OSError, UnicodeDecodeError) as e:
        raise ModelConfigError(f"{path}: cannot read the model config file: {getattr(e, 'strerror', None) or e}") \
            from None
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as e:
        raise ModelConfigError(f"{path}: {e}") from None
    if config.WhichOneof("config") != "model_config_list" or not config.model_config_list.config:
        raise ModelConfigError(f"{path}: no model_config_list {{ config {{ ... }} }} entries (custom_model_config "
                               "is not supported)")
    return config


def single_model_config(name: str, base_path: str):
    """The config TF Serving builds from --model_name and --model_base_path."""
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    config.model_config_list.config.add(name=name, base_path=base_path, model_platform="tensorflow")
    return config


def _wanted_versions(entry, versions: dict[int, Path], where: str) -> list[int]:
    policy = entry.model_version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return sorted(versions)
    if choice == "specific":
        wanted = sorted(set(policy.specific.versions))
        missing = [v for v in wanted if v not in versions]
        if not wanted or missing:
            raise ModelConfigError(f"{where}: specific versions {', '.join(map(str, missing)) or '(none)'} not in "
                                   f"{entry.base_path} (versions: {', '.join(map(str, versions))})")
        return wanted
    count = policy.latest.num_versions if choice == "latest" and policy.latest.num_versions else 1
    return sorted(versions)[-count:]


def load_models(config, where: str, metrics: ServingMetrics | None = None) -> Models:
    """Loads every model of a ModelServerConfig; ModelConfigError/ModelDirError (one line) when one cannot be."""
    models, names = [], set()
    for entry in config.model_config_list.config:
        place = f"{where}: model '{entry.name}'"
        check_model_name(entry.name or None)
        if not entry.name or entry.name in names:
            raise ModelConfigError(f"{place}: every model needs a name of its own")
        names.add(entry.name)
        if entry.model_platform not in ("", "tensorflow"):
            raise ModelConfigError(f"{place}: model_platform '{entry.model_platform}' is not served (only tensorflow)")
        versions = find_versions(entry.base_path)
        wanted = _wanted_versions(entry, versions, place)
        labels = dict(entry.version_labels)
        for label, version in labels.items():
            if version not in wanted:
                raise ModelConfigError(f"{place}: label {label} names version {version}, which the version policy "
                                       f"does not serve (served: {', '.join(map(str, wanted))})")
        servables = {}
        for version in wanted:
            try:
                servables[version] = load_servable(version, versions[version])
            except ModelDirError:
                if metrics is not None:
                    metrics.load(versions[version], ok=False)
                raise
            if metrics is not None:
                metrics.load(versions[version], ok=True)
        models.append(Model(entry.name, Path(entry.base_path), servables, labels))
    return Models(models)
