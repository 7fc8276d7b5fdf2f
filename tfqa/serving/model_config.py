"""TF Serving's `--model_config_file`: the `ModelServerConfig` text proto, and version policies.

    model_config_list {
      config {
        name: "tfqa"
        base_path: "/models/tfqa"
        model_platform: "tensorflow"
        model_version_policy { latest { num_versions: 1 } }   # or all {} / specific { versions: 1 versions: 2 }
        version_labels { key: "stable" value: 1 }
      }
    }

The file is parsed by protobuf's text-format parser into the message classes
`tensorflow-serving-api` ships (`tensorflow_serving.config`), so the syntax TF
Serving accepts is the syntax accepted here and a typo is an error naming the
line. `VersionPolicy` is the `model_version_policy` of one model: which of the
integer versions on disk are served (TF Serving's default: the newest one).
`logging_config` and the deprecated `model_type` are accepted and ignored.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from tfqa.serving.errors import ModelDirError


class ModelConfigError(ModelDirError):
    """An unreadable or unusable model config file; one line naming the file, the field and the problem."""


@dataclass(frozen=True)
class VersionPolicy:
    """Which versions of a model to serve: the newest `num_versions`, all of them, or the `versions` listed."""

    kind: str = "latest"  # "latest" | "all" | "specific"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def select(self, available) -> set[int]:
        """The versions to serve out of `available` (version numbers on disk that can be loaded)."""
        available = sorted(set(available))
        if self.kind == "all":
            return set(available)
        if self.kind == "specific":
            return set(self.versions) & set(available)
        return set(available[-self.num_versions:])

    def __str__(self) -> str:
        if self.kind == "specific":
            return f"specific {{{' '.join(f'versions: {v}' for v in self.versions)}}}"
        return "all {}" if self.kind == "all" else f"latest {{num_versions: {self.num_versions}}}"


LATEST = VersionPolicy()
ALL = VersionPolicy("all")


@dataclass(frozen=True)
class ModelSpec:
    """One served model: its name in URLs, its export base directory, version policy and version labels."""

    name: str
    base_path: Path
    policy: VersionPolicy = LATEST
    labels: dict[str, int] = field(default_factory=dict)


def parse_model_config(text: str, where: str = "model config") -> list[ModelSpec]:
    """The models of a ModelServerConfig text proto, checked; ModelConfigError names `where` and the field."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    message = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as e:
        raise ModelConfigError(f"{where}: {e}") from None
    if message.HasField("custom_model_config"):
        raise ModelConfigError(f"{where}: custom_model_config is not supported; list the models in "
                               "model_config_list { config { ... } }")
    if not message.model_config_list.config:
        raise ModelConfigError(f"{where}: model_config_list has no config {{ ... }}: no model to serve")
    specs, names = [], set()
    for i, config in enumerate(message.model_config_list.config):
        at = f"{where}: model_config_list.config[{i}]" + (f" (name \"{config.name}\")" if config.name else "")
        if not re.fullmatch(r"[^/:\s?#%]+", config.name):
            raise ModelConfigError(f"{at}: name must be non-empty without '/', ':', '?', '#', '%' or spaces, "
                                   f"not \"{config.name}\"")
        if config.name in names:
            raise ModelConfigError(f"{at}: a second model named \"{config.name}\"; model names must be unique")
        names.add(config.name)
        if not config.base_path:
            raise ModelConfigError(f"{at}: base_path is empty (the export directory holding 1/, 2/, ...)")
        if config.model_platform not in ("", "tensorflow"):
            raise ModelConfigError(f"{at}: model_platform \"{config.model_platform}\" is not served here; "
                                   "only \"tensorflow\" SavedModels")
        specs.append(ModelSpec(config.name, Path(config.base_path), _policy(config.model_version_policy, at),
                               _labels(config.version_labels, at)))
    return specs


def _policy(message, at: str) -> VersionPolicy:
    kind = message.WhichOneof("policy_choice")
    if kind == "all":
        return ALL
    if kind == "specific":
        versions = tuple(sorted(set(message.specific.versions)))
        if not versions or min(versions) < 0:
            raise ModelConfigError(f"{at}: model_version_policy.specific.versions must list version numbers "
                                   f"(>= 0), not [{', '.join(map(str, message.specific.versions))}]")
        return VersionPolicy("specific", versions=versions)
    if kind == "latest":
        n = message.latest.num_versions
        if n < 1:
            raise ModelConfigError(f"{at}: model_version_policy.latest.num_versions must be at least 1, not {n}")
        return VersionPolicy("latest", num_versions=n)
    return LATEST


def _labels(labels, at: str) -> dict[str, int]:
    out = {}
    for label, version in sorted(labels.items()):
        if not re.fullmatch(r"[^/:=\s]+", label) or version < 0:
            raise ModelConfigError(f"{at}: version_labels {{ key: \"{label}\" value: {version} }}: a label is a "
                                   "word without '/', ':', '=' or spaces pointing at a version >= 0")
        out[label] = version
    return out


def read_model_config(path: str | os.PathLike) -> list[ModelSpec]:
    """The models of `--model_config_file PATH` (relative base paths are taken from the working directory)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ModelConfigError(f"{path}: cannot read the model config file: "
                               f"{getattr(e, 'strerror', None) or e}") from None
    return parse_model_config(text, str(path))
