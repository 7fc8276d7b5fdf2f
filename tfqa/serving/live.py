"""Several models, and new versions picked up live: what `--model_config_file` and polling serve.

`ServedModels` holds the models a server answers for, by name, and answers
TF Serving's requests for any of them. With `start_polling(seconds)` a thread
reads every model's base directory each `seconds` (TF Serving's
`--file_system_poll_wait_seconds`; 0 means never) and, per its version policy:

- a new integer version is loaded and its warm-up replayed before it takes
  traffic (until then the old versions answer);
- a version leaving the policy, or deleted from disk, stops taking requests at
  once and is unloaded when the requests running on it have finished;
- a version that fails to load is reported in one line and skipped until its
  folder changes; the versions already served keep serving;
- half-written exports never load: only integer names count
  (`tfqa.export.versions.version_dirs`), and exports are renamed into place.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tfqa.core.progress import SILENT, Reporter
from tfqa.export.versions import version_dirs
from tfqa.serving.errors import ModelDirError
from tfqa.serving.model_config import ModelSpec
from tfqa.serving.servables import Model, load_model, load_servable, release_memory

# How long an unloaded version may keep running requests before its memory is handed back anyway
# (a request still holding it keeps it alive; only the trim comes early).
UNLOAD_WAIT_SECONDS = 60.0


class ServedModels:
    """The models one server answers for, by name; `resolve`/`serving`/`status`/`metadata` as `Model`'s."""

    def __init__(self, models: list[Model], reporter: Reporter = SILENT):
        if not models:
            raise ValueError("ServedModels needs at least one model")
        self.models = {model.name: model for model in models}
        self.reporter = reporter
        self._failed: dict[tuple[str, int], float] = {}  # (model, version) → the mtime of its failed folder
        self.load_seconds: dict[tuple[str, int], float] = {}  # (model, version) → its load + warm-up time
        self.on_load = None  # called (version path, loaded or not) after each live load (the metrics' load count)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def name(self) -> str:
        """The first model's name (what error hints and banners show)."""
        return next(iter(self.models))

    def _model(self, name: str) -> Model:
        # An unknown name goes to the first model, whose name check gives TF Serving's not-found error for it.
        return self.models.get(name) or self.models[self.name]

    def resolve(self, name: str, version: int | None = None, label: str | None = None):
        """The servable a request names (see `Model.resolve`)."""
        return self._model(name).resolve(name, version, label)

    def serving(self, name: str, version: int | None = None, label: str | None = None):
        """The servable a request names, held loaded for the block (see `Model.serving`)."""
        return self._model(name).serving(name, version, label)

    def status(self, name: str, version: int | None = None, label: str | None = None) -> dict:
        """GetModelStatusResponse JSON of one model (see `Model.status`)."""
        return self._model(name).status(name, version, label)

    def metadata(self, name: str, version: int | None = None, label: str | None = None) -> dict:
        """GetModelMetadataResponse JSON of one model (see `Model.metadata`)."""
        return self._model(name).metadata(name, version, label)

    def poll(self) -> None:
        """Reads every base directory once and loads/unloads versions as their policies say (module docstring)."""
        for model in self.models.values():
            self._poll_model(model)

    def _poll_model(self, model: Model) -> None:
        on_disk = version_dirs(model.base_dir) if Path(model.base_dir).is_dir() else {}
        loadable = {v: path for v, path in on_disk.items()
                    if v in model.servables or self._failed.get((model.name, v)) != _stamp(path)}
        added, took = self._load_wanted(model, loadable)
        gone = model.replace_versions(added, set(model.servables) - self._wanted(model, loadable))
        for servable in gone:
            servable.wait_idle(UNLOAD_WAIT_SECONDS)
            servable.signatures.clear()
            servable.loaded = None
        if gone:
            release_memory()
        if added or gone:
            changes = ([f"loaded {', '.join(took)} with its warm-up"] if added else []) + (
                [f"unloaded {_listed(s.version for s in gone)}"] if gone else [])
            self.reporter.line(f"model {model.name}: serving {_listed(model.servables)} ({'; '.join(changes)})")

    @staticmethod
    def _wanted(model: Model, loadable: dict) -> set[int]:
        return model.policy.select(loadable) | (set(model.labels.values()) & set(loadable))

    def _load_wanted(self, model: Model, loadable: dict) -> tuple[dict, list[str]]:
        """Loads the wanted versions not served yet; a failed one leaves `loadable`, and the policy is asked again
        (latest {1} with a broken 4: version 3, if new, is loaded instead)."""
        added, took = {}, []
        while missing := sorted(self._wanted(model, loadable) - set(model.servables) - set(added)):
            for version in missing:
                start = time.monotonic()
                try:
                    added[version] = load_servable(version, loadable[version])
                except Exception as e:  # noqa: BLE001 - any failure to load: the versions already served keep serving
                    if self.on_load is not None:
                        self.on_load(loadable[version], False)
                    self._failed[(model.name, version)] = _stamp(loadable.pop(version))
                    reason = str(e) if isinstance(e, ModelDirError) else f"{type(e).__name__}: {e}"
                    self.reporter.warn(f"model {model.name}: version {version} not loaded, still serving "
                                       f"{_listed(model.servables)}: {reason}".splitlines()[0])
                    continue
                self.load_seconds[(model.name, version)] = seconds = time.monotonic() - start
                if self.on_load is not None:
                    self.on_load(loadable[version], True)
                took.append(f"{version} in {seconds:.2f} s")
        return added, took

    def start_polling(self, seconds: float) -> None:
        """Polls every `seconds` in a daemon thread until `close` (0: never, as TF Serving)."""
        if seconds <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._poll_loop, args=(seconds,), name="tfqa-version-poll",
                                        daemon=True)
        self._thread.start()

    def _poll_loop(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            try:
                self.poll()
            except Exception as e:  # noqa: BLE001 - a poll that fails (a vanished folder...) must not end polling
                self.reporter.warn(f"version poll failed: {type(e).__name__}: {e}")

    def close(self) -> None:
        """Stops polling (after the poll in progress)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)


def _stamp(path: Path) -> float:
    """When a version folder last changed (a failed version is retried once it is rewritten)."""
    times = []
    for item in (path, path / "saved_model.pb"):
        try:
            times.append(item.stat().st_mtime)
        except OSError:
            pass
    return max(times, default=0.0)


def _listed(versions) -> str:
    versions = sorted(versions)
    return f"version{'s' if len(versions) != 1 else ''} {', '.join(map(str, versions)) or 'none'}"


def load_models(specs: list[ModelSpec], reporter: Reporter = SILENT) -> ServedModels:
    """Loads every model of a model config (`tfqa.serving.model_config`); ModelDirError names the failing one."""
    return ServedModels([load_model(spec.base_path, spec.name, labels=spec.labels, policy=spec.policy)
                         for spec in specs], reporter)
