"""Distribution strategies (`--strategy`) and who writes what when several workers train one model.

`make_strategy("auto")` picks MultiWorkerMirroredStrategy when `TF_CONFIG`
names more than one task, a TPU when one is attached, else MirroredStrategy
over the GPUs (the default strategy on a CPU-only machine). Under several
workers every worker runs the same program, collectives included (fit,
predict, checkpoint and SavedModel saves), but only the chief keeps files:
the others write into a temporary folder (`worker_dir`) removed at the end,
as TF's multi-worker Keras tutorial does. BackupAndRestore is the exception:
every worker gets the same `OUTPUT_DIR/backup` (tf-keras writes the chief's
backup to `backup/chief`, the others' to transient `backup/workertemp_N`, and
restores *every* worker from `backup/chief`), so fault tolerance needs that
folder on storage all workers share.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import tempfile
from pathlib import Path

from tfqa.core.errors import TfqaError
from tfqa.core.run_dir import DEFAULT_EXPORT, export_base

class ClusterError(TfqaError, RuntimeError):
    """The workers of a multi-worker run cannot work together (e.g. their output folder is not shared)."""


STRATEGIES = ("auto", "mirrored", "multi_worker", "tpu", "one_device")


def parse_tf_config(value: str | dict | None = None) -> dict:
    """TF_CONFIG as a dict ({} when unset or empty); `value` defaults to the environment variable."""
    if value is None:
        value = os.environ.get("TF_CONFIG", "")
    if isinstance(value, dict):
        return value
    value = value.strip()
    if not value:
        return {}
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON: {e}") from None
    if not isinstance(parsed, dict):
        raise ValueError("TF_CONFIG must be a JSON object with 'cluster' and 'task'")
    return parsed


def training_tasks(tf_config: dict) -> int:
    """How many tasks train (the cluster's "chief" plus "worker" entries); evaluators and PS do not count."""
    cluster = tf_config.get("cluster") or {}
    if not isinstance(cluster, dict):
        raise ValueError("TF_CONFIG's 'cluster' must be a JSON object of task lists")
    return sum(len(cluster.get(job) or ()) for job in ("chief", "worker"))


def training_workers(tf_config: str | dict | None = None) -> int:
    """Chief + worker tasks named by TF_CONFIG (1 without it, or when it is unreadable): a multi-worker `fit`'s
    input pipelines. (A TF_CONFIG that cannot be read fails at `make_strategy`, with the reason.)"""
    try:
        return max(1, training_tasks(parse_tf_config(tf_config)))
    except ValueError:
        return 1


def is_chief_task(task_type: str | None, task_id: int | None, cluster: dict | None) -> bool:
    """Whether this task keeps the outputs: the "chief", else worker 0 of a cluster without one; a lone process is."""
    if not task_type or not cluster:
        return True
    if task_type == "chief":
        return True
    return task_type == "worker" and int(task_id or 0) == 0 and not cluster.get("chief")


def chief_process(tf_config: str | dict | None = None) -> bool:
    """`is_chief_task` for this process from TF_CONFIG alone, before any strategy exists (True without a cluster,
    or when TF_CONFIG cannot be read: `make_strategy` then fails with the reason)."""
    try:
        parsed = parse_tf_config(tf_config)
        if training_tasks(parsed) <= 1:
            return True
    except ValueError:
        return True
    task = parsed.get("task") if isinstance(parsed.get("task"), dict) else {}
    try:
        return is_chief_task(task.get("type"), task.get("index"), parsed.get("cluster"))
    except (TypeError, ValueError):
        return True


def choose_strategy(name: str = "auto", tf_config: str | dict | None = None, tpu_present: bool | None = None,
                    gpus: int | None = None) -> str:
    """The strategy `name` resolves to: one of "multi_worker", "tpu", "mirrored", "default", "one_device".

    Pure (no TensorFlow) when `tpu_present` and `gpus` are given. "auto":
    multi_worker when TF_CONFIG names more than one chief/worker task, tpu
    when a TPU answers, mirrored over the GPUs when there are any, else the
    default strategy (mirroring one CPU only adds per-step overhead: 0.83x the
    throughput of a plain fit, `bench/training_throughput.py`).
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    if name != "auto":
        return name
    if training_tasks(parse_tf_config(tf_config)) > 1:
        return "multi_worker"
    if tpu_present is None:
        tpu_present = find_tpu() is not None
    if tpu_present:
        return "tpu"
    if gpus is None:
        gpus = len(_physical_gpus())
    return "mirrored" if gpus else "default"


def _physical_gpus():
    import tensorflow as tf

    return tf.config.list_physical_devices("GPU")  # physical: does not start the runtime (MWMS must come first)


def _tpu_hinted() -> bool:
    """Cheap local signs of a TPU; without them the resolver is not tried (it may ask a metadata server)."""
    return bool(os.environ.get("TPU_NAME") or os.environ.get("COLAB_TPU_ADDR")
                or os.environ.get("TPU_ACCELERATOR_TYPE") or glob.glob("/dev/accel*"))


def find_tpu():
    """A connectable TPUClusterResolver, or None (no TPU, or resolving failed); no network without a TPU hint."""
    if not _tpu_hinted():
        return None
    try:
        import tensorflow as tf

        return tf.distribute.cluster_resolver.TPUClusterResolver(tpu=os.environ.get("TPU_NAME", ""))
    except Exception:  # noqa: BLE001 - ValueError/NotFoundError/HTTP errors all mean "no usable TPU"
        return None


def make_strategy(name: str = "auto", devices: list[str] | None = None):
    """The tf.distribute strategy for `--strategy name`; call it before any other TensorFlow op.

    `devices` (with "auto" or "mirrored") mirrors over exactly those devices.
    MultiWorkerMirroredStrategy reads the cluster from TF_CONFIG and, on CPUs,
    uses ring collectives (CommunicationOptions' AUTO choice).
    """
    import tensorflow as tf

    if devices is not None and name in ("auto", "mirrored"):
        return tf.distribute.MirroredStrategy(devices)
    kind = choose_strategy(name)
    if kind == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy(
            communication_options=tf.distribute.experimental.CommunicationOptions())
    if kind == "tpu":
        resolver = find_tpu()
        if resolver is None:
            raise ValueError("--strategy tpu: no TPU found (set TPU_NAME, or run on a TPU VM)")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    if kind == "one_device":
        # MirroredStrategy over the one device, not OneDeviceStrategy: tf-keras' BackupAndRestore (resuming a
        # killed run) rejects OneDeviceStrategy; mirroring a single device computes the same.
        return tf.distribute.MirroredStrategy(["/gpu:0" if _physical_gpus() else "/cpu:0"])
    if kind == "mirrored":
        gpus = [f"/gpu:{i}" for i in range(len(_physical_gpus()))]
        return tf.distribute.MirroredStrategy(gpus or None)
    return tf.distribute.get_strategy()


def task_of(strategy) -> tuple[str | None, int | None, dict]:
    """(task type, task id, cluster dict) of this process in `strategy` ((None, None, {}) outside a cluster)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return None, None, {}
    try:
        cluster = resolver.cluster_spec().as_dict()
    except Exception:  # noqa: BLE001 - a resolver that cannot say has no cluster to speak of
        cluster = {}
    return getattr(resolver, "task_type", None), getattr(resolver, "task_id", None), cluster


def is_chief(strategy) -> bool:
    """Whether this process keeps the run's files (True for every single-process strategy)."""
    if training_tasks({"cluster": task_of(strategy)[2]}) <= 1:
        return True
    return is_chief_task(*task_of(strategy))


def worker_dir(base: str | os.PathLike, strategy) -> Path:
    """Where this process writes: `base` on the chief, a new temporary folder on the other workers.

    Non-chief workers still run every save (they may involve collectives), into
    this folder; `remove_worker_dir` deletes it afterwards.
    """
    if is_chief(strategy):
        return Path(base)
    task_type, task_id, _ = task_of(strategy)
    return Path(tempfile.mkdtemp(prefix=f"tfqa-{task_type}-{task_id}-"))


def remove_worker_dir(path: str | os.PathLike, base: str | os.PathLike) -> None:
    """Deletes a non-chief worker's folder (never `base`, the chief's output folder)."""
    if Path(path).resolve() != Path(base).resolve():
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def worker_outputs(config, strategy):
    """`config` pointed at this worker's output folder (the chief's unchanged), removed again on the way out.

    A non-chief worker's exports go to its own folder too. Files a preset
    makes once and every worker must share (`Preset.shared_files`, e.g. the
    smoke preset's vocab: WordPiece training differs between processes, and
    MultiWorkerMirroredStrategy broadcasts the chief's initial weights, which
    must have the same shapes) are awaited in the shared OUTPUT_DIR and copied in.
    """
    from tfqa.training.presets import preset_of

    out = worker_dir(config.output_dir, strategy)
    if out == Path(config.output_dir):
        yield config
        return
    try:
        preset = preset_of(config)
        for name in preset.shared_files if preset else ():
            shutil.copy(wait_for_chief_file(Path(config.output_dir) / name), out / name)
        export = str(out / DEFAULT_EXPORT) if export_base(config) else "none"
        yield config.replace(output_dir=str(out), export_dir=export)
    finally:
        remove_worker_dir(out, config.output_dir)


def wait_for_chief_file(path: Path, timeout: float = 600.0) -> Path:
    """`path` once the chief has written it (atomically) into the shared output folder; a clear error after `timeout`."""
    import time

    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise ClusterError(f"waited {timeout:.0f} s for the chief's {path}: with several workers, a --preset "
                            "needs --output_dir on storage all workers share")
        time.sleep(0.5)
    return path
