"""``bench run``: data -> model -> (train) -> sample -> store -> score -> record, grid and table row.

Reads top to bottom as the steps of a run:

1. the task at its scale (``quick`` by default: minutes on a CPU; ``paper`` is the protocol);
2. the data: the real dataset if a root is found (flag, ``data_root=`` key or environment),
   otherwise the task's procedural stand-in, written once in the real on-disk format;
3. the model: a given checkpoint, else official weights from the asset store, else trained here
   with the shared loop (``bench train``);
4. samples into a lossless store keyed by the model's identity (resumable, sharded over
   ``torchrun`` processes with per-sample seeds), then scores recomputed from the store;
5. a JSON run record with provenance, a PNG grid, and a leaderboard row next to the ``dummy``
   model (repeat the last context frame) scored on the same clips.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shlex
import socket
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, is_dataclass, replace
from pathlib import Path

import torch

from bench.config import apply_options, validate
from bench.config import identity as config_identity
from bench.errors import BenchError, CheckpointError, ConfigError, DataError, NotWritable, RunLocked, one_line
from bench.grid import has_curves, render_task_curves
from bench.paths import farzoo_home, portable, portable_text
from bench.registry import get_model_factory, get_task
from bench.tasks import Task
from bench.train import TrainConfig, barrier, canonical, dist_info, load_checkpoint, seed_everything, train


SCALES = ("quick", "paper")


@dataclass
class RunConfig:
    """One ``bench run``; ranges in the field metadata (checked by ``bench.config.validate``).

    Every field is an option of the command line (``key=value``) and of a recipe file, shown by
    ``bench run --help`` and stored in the record's ``config``, unless its metadata says ``cli:
    False``; ``identity: False`` marks fields that do not change the run's result (left out of the
    config hash that marks a sweep cell as finished); ``path: True`` marks paths (written portably
    in records, expanded again when a record is rerun). A new option is one line here."""

    model: str = "far"  # a name in bench.registry.MODELS (the ``model`` group: model=<name>, model.<field>=...)
    task: str = "dmlab_long"  # a name in bench.tasks.TASKS
    scale: str = field(default="quick", metadata={"choices": SCALES})
    # else $FARZOO_<DATASET>_ROOT, $FARZOO_DATA/<dataset>, or the stand-in
    data_root: str | None = field(default=None, metadata={"path": True})
    # a bench training checkpoint or an official state dict
    checkpoint: str | None = field(default=None, metadata={"path": True})
    # train even where the project ships weights trained with this exact configuration (bench.pretrained)
    from_scratch: bool = False
    workdir: str = field(default="runs", metadata={"path": True, "identity": False})  # checkpoints, sample stores
    results: str = field(default="results", metadata={"path": True, "identity": False})  # records, grids
    device: str | None = None
    sample_batch_size: int = field(default=8, metadata={"ge": 1})
    compare_dummy: bool = True  # score the dummy model on the same clips (the reference of the intervals)
    progress: bool = field(default=True, metadata={"identity": False})
    # another run holding this model's run directory: wait up to this long for it (0: refuse at once)
    lock_wait_s: float = field(default=0.0, metadata={"ge": 0, "identity": False})
    train_only: bool = field(default=False, metadata={"cli": False})  # set by the ``train`` verb
    # the model.<field>= and train.<field>= values that differ from the defaults of (model, task, scale)
    model_options: dict = field(default_factory=dict, metadata={"cli": False})
    train_options: dict = field(default_factory=dict, metadata={"cli": False})


# ----------------------------------------------------------------------------- sizes per scale

# How big a stand-in is written, per scale: (training videos, at least this many eval videos).
# UCF-101's test list holds 10x the eval count (FAR evaluates every 10th clip).
STANDIN_SIZE = {"quick": {"dmlab": (128, 16), "minecraft": (32, 16), "ucf101": (101, 16), "bair": (64, 8),
                          "greenearthnet": (16, 4)},
                "paper": {"dmlab": (4000, 256), "minecraft": (2000, 256), "ucf101": (2020, 256),
                          "bair": (2000, 256), "greenearthnet": (400, 64)}}


def default_train_config(task: Task, scale: str) -> TrainConfig:
    """``quick``: a few minutes on a 2-core CPU. ``paper``: the official FAR train config of the task's
    dataset (``bench.recipes.RECIPES``: steps, warm-up, batch, learning rate, EMA; expect days on GPUs)."""
    if scale == "quick":
        from bench.recipes import quick_recipe
        return quick_recipe(task)
    from bench.recipes import recipe_for
    r = recipe_for(task)
    return TrainConfig(steps=r.steps, batch_size=r.batch_size, lr=r.lr, warmup_steps=r.warmup_steps,
                       ema_decay=r.ema_decay, schedule=r.schedule, ckpt_every=5000)


# ----------------------------------------------------------------------------- options and places

def train_config(run: RunConfig, task: Task) -> TrainConfig:
    """The training recipe of the run: the scale's defaults with ``train.<field>=`` options, checked."""
    cfg = replace(default_train_config(task, run.scale), progress=run.progress)
    return apply_options(cfg, run.train_options, "train")


def check_options(run: RunConfig, world: int = 1) -> tuple[Task, TrainConfig]:
    """Every option of the run checked before any work: names, types, ranges, the model and task
    names, and a training batch that splits over the processes. Returns (task, training recipe)."""
    from bench.registry import MODEL_CONFIGS
    validate(run)
    base_task = get_task(run.task)
    get_model_factory(run.model)
    MODEL_CONFIGS[run.model](task=base_task.at_scale(run.scale), scale=run.scale, **run.model_options)
    tcfg = train_config(run, base_task)
    needs_training = run.checkpoint is None and run.model != "dummy"
    if needs_training and tcfg.batch_size % world:
        raise ConfigError(f"train.batch_size={tcfg.batch_size}: expected a multiple of the {world} processes "
                          f"(torchrun --nproc_per_node {world}); use e.g. "
                          f"train.batch_size={world * max(1, round(tcfg.batch_size / world))}")
    return base_task, tcfg


def check_writable(path: Path, what: str) -> None:
    """Create ``path`` if needed and prove that a file can be written in it (root ignores mode bits,
    so the test writes for real)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path, prefix=".write-test-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise NotWritable(f"{what} {path} is not writable ({e.strerror or e}); fix its permissions or choose "
                          f"another one") from None


def _standin_root(task: Task, scale: str) -> Path:
    return farzoo_home() / "standins" / f"{task.dataset}-{scale}"


def check_places(run: RunConfig, task: Task) -> None:
    """The work dir, the results dir and ``$FARZOO_HOME`` (stand-ins, the asset store's hash cache) are
    writable, and a given data root exists; checked before any work starts."""
    from bench.data import resolve_root
    check_writable(Path(run.workdir), "work dir (--workdir)")
    if not run.train_only:
        check_writable(Path(run.results) / "runs", "results dir (--results)")
    check_writable(farzoo_home(), "$FARZOO_HOME (stand-in data, asset hashes)")
    try:
        resolve_root(task.dataset, flag=run.data_root)
    except FileNotFoundError as e:
        raise DataError(run.data_root or task.dataset, None, one_line(e),
                        "give an existing dataset folder (--data-root) or none for the stand-in") from None


# ----------------------------------------------------------------------------- data

@dataclass(frozen=True)
class DataSource:
    dataset: str
    root: Path
    standin: bool

    @property
    def label(self) -> str:
        return "stand-in" if self.standin else "real"

    @property
    def fix(self) -> str:
        from bench.data.check import fix_for
        return fix_for(self.dataset, self.root, self.standin)


def prepare_data(task: Task, scale: str, data_root: str | None, log=print, progress: bool = False) -> DataSource:
    """The real dataset when a root is found; otherwise the stand-in (materialised once, on rank 0,
    with a bar over the videos written when ``progress``)."""
    from bench.data import resolve_root
    from bench.data.standins import is_standin, materialize
    from bench.progress import bar
    root = resolve_root(task.dataset, flag=data_root)
    if root is not None:  # a given folder may itself hold a stand-in: it stays labelled as one
        source = DataSource(task.dataset, Path(root), standin=is_standin(root))
        if dist_info()[0] == 0:
            log(f"[data] {task.dataset} at {root} ({source.label} data)")
        return source
    num_train, num_eval = STANDIN_SIZE[scale][task.dataset]
    root = _standin_root(task, scale)
    rank, _ = dist_info()
    if rank == 0:
        log(f"[data] no {task.dataset} data found (flag, $FARZOO_{task.dataset.upper()}_ROOT, $FARZOO_DATA); "
            f"using the procedural STAND-IN at {root}")

        def writing(jobs: int):
            log(f"[data] writing the stand-in once: {num_train} training and {num_eval} evaluation videos "
                f"({jobs} files) in the real on-disk format")
            return bar(jobs, "stand-in", "files", enabled=progress)
        materialize(task.dataset, root, num_train=num_train, num_eval=num_eval, progress=writing)
    barrier()
    return DataSource(task.dataset, root, standin=True)


def check_data(task: Task, source: DataSource, train: bool, deep: bool, log=print) -> None:
    """Read every evaluated clip and open every training file (``train``) before any work; a bad file
    is one DataError line naming it (see ``bench.data.check``)."""
    from bench.data.check import check_eval, check_train
    t0 = time.perf_counter()
    n_eval = check_eval(task, source.root, source.fix)
    n_train = check_train(task, source.root, deep=deep, fix=source.fix) if train else 0
    log(f"[data] checked {n_eval} evaluation clips" + (f" and {n_train} training videos" if train else "")
        + f" in {time.perf_counter() - t0:.1f}s")


def eval_dataset(task: Task, source: DataSource):
    from bench.data import ClipDataset, eval_refs
    return ClipDataset(task, eval_refs(task, source.root), source.root, fix=source.fix)


def train_frames(task: Task, scale: str) -> int:
    """Frames per training clip: the evaluated clip's, unless the paper-scale recipe trains on longer
    clips (BAIR: one model on 30 frames serves both BAIR protocols)."""
    if scale == "paper":
        from bench.recipes import recipe_for
        return recipe_for(task).clip_frames or task.num_frames
    return task.num_frames


def train_dataset(task: Task, source: DataSource, scale: str = "quick"):
    from bench.data import TrainClipDataset, train_refs
    return TrainClipDataset(task, train_refs(task, source.root), source.root,
                            num_frames=train_frames(task, scale), fix=source.fix)


def data_identity(task: Task, source: DataSource) -> dict:
    """What identifies the training data, portably: the dataset, stand-in parameters, and the
    relative path and size of every training file (no absolute path, no modification time)."""
    from bench.data import train_refs
    from bench.data.standins import standin_info
    h = hashlib.sha256()
    refs = train_refs(task, source.root)
    for ref in refs:
        for path in (ref.path, ref.action_path):
            if path is not None:
                p = Path(path)
                rel = os.path.relpath(p, source.root)
                h.update(f"{rel}|{p.stat().st_size}|{ref.record}\n".encode())
    info = standin_info(source.root) if source.standin else None
    return {"dataset": task.dataset, "split": task.train_split, "stand_in": source.standin,
            "standin_params": (info or {}).get("params"), "videos": len(refs), "files": h.hexdigest()[:16]}


# ----------------------------------------------------------------------------- model and weights

def sha256_file(path: Path, prefix: int | None = None) -> str:
    """sha256 of a weights file, hashed once per (path, size, mtime, ...) through the asset store's cache
    (a file the official loader already verified is not read a second time)."""
    from bench.assets import file_sha256
    digest = file_sha256(path)
    return digest[:prefix] if prefix else digest


def load_weights(model, path: Path) -> str:
    """Load a bench checkpoint (EMA weights) or an official state dict; returns the file's sha256.
    A file that is neither raises :class:`CheckpointError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (--checkpoint)")
    expect = (f"expected a bench training checkpoint (final.pt of `python -m bench train`, with an 'ema' "
              f"entry) or official weights for model {getattr(model, 'name', '?')!r}")
    try:
        state = load_checkpoint(path) if path.suffix == ".pt" else None
    except CheckpointError as e:
        raise CheckpointError(f"{e}; {expect}") from None
    if isinstance(state, dict) and "ema" in state:
        try:
            model.trainable_module().load_state_dict(state["ema"])
        except (RuntimeError, KeyError, TypeError) as e:
            raise CheckpointError(f"{path}: its weights do not fit model {model.name!r} with this configuration "
                                  f"({one_line(e)[:300]}); pass the model.<field>= options it was trained with") \
                from None
        return sha256_file(path)
    if not hasattr(model, "load_official"):
        raise CheckpointError(f"{path}: not a bench training checkpoint (no 'ema' entry), and model "
                              f"{model.name!r} has no official-weights loader; {expect}")
    try:
        model.load_official(path)
    except Exception as e:  # the official loader's errors (format, keys, shapes) for a user-given file
        raise CheckpointError(f"{path}: cannot be loaded ({type(e).__name__}: {one_line(e)[:300]}); {expect}") \
            from None
    return sha256_file(path)


def identity(run: RunConfig, model, weights: str, device=None) -> str:
    """A short hash of everything that determines the samples: model config, weights and the precision
    sampling actually runs in on ``device`` (a store sampled in fp32 on a CPU is not resumed in bf16 on
    a GPU)."""
    what = {"model": run.model, "config": model.config(), "weights": weights}
    if hasattr(model, "sampling_precision"):
        what["precision"] = model.sampling_precision(device)
    blob = json.dumps(what, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def training_identity(run: RunConfig, task: Task, model, tcfg: TrainConfig, source: DataSource,
                      world: int) -> dict:
    """Everything trained weights depend on: the recipe, the model's config (less its sampling
    knobs), the task and scale, the training data and the number of processes. Stored in every
    checkpoint; a checkpoint is reused only for an equal identity."""
    cfg = getattr(model, "model_config", None)
    model_cfg = config_identity(cfg) if cfg is not None and is_dataclass(cfg) else \
        (model.config() if hasattr(model, "config") else {})
    return {"train": config_identity(tcfg), "model": run.model, "model_config": model_cfg,
            "task": training_task(task, run.scale), "scale": run.scale, "data": data_identity(task, source),
            "processes": world}


def training_task(task: Task, scale: str) -> dict:
    """What of a task the training clips depend on (not its evaluation: a metric convention or the
    number of evaluated videos does not make trained weights stale): the dataset, split, resolution,
    stride, clip length and conditioning, at ``scale``."""
    return {"name": task.name, "dataset": task.dataset, "train_split": task.train_split,
            "resolution": task.resolution, "frame_stride": task.frame_stride,
            "clip_frames": train_frames(task, scale), "conditions": [p.condition for p in task.parts]}


def train_dir(run_dir: Path, ident: dict) -> Path:
    """``<run dir>/train-<hash of the training identity>``: one directory per training configuration."""
    return run_dir / f"train-{hashlib.sha256(canonical(ident).encode()).hexdigest()[:12]}"


def obtain_weights(run: RunConfig, task: Task, model, source: DataSource, run_dir: Path, device,
                   tcfg: TrainConfig | None = None, given: str | None = None, log=print, timing=None) -> str:
    """Given checkpoint, else official weights in the asset store, else train here. Returns a weights id
    (``given``: the id of a checkpoint the caller already loaded; ``timing``: see ``bench.train.train``)."""
    if not getattr(model, "trainable", False):
        return "none"
    weights_asset, vae_asset = getattr(model, "official_assets", lambda: (None, None))()
    if run.scale == "paper" and vae_asset is not None:
        # the autoencoder is not trained here: a paper-scale run needs the released one
        from bench.assets import require
        model.load_codec_weights(require(vae_asset))
    if given is not None:
        return given
    if run.checkpoint:
        return f"sha256:{load_weights(model, Path(run.checkpoint))}"
    if run.scale == "paper" and weights_asset is not None:
        from bench.assets import AssetMissing, require
        try:
            path = require(weights_asset)
            log(f"[weights] official checkpoint {path}")
            return f"sha256:{load_weights(model, path)}"
        except AssetMissing as e:
            log(f"[weights] {e}; training instead")
    cfg = tcfg if tcfg is not None else train_config(run, task)
    _, world = dist_info()
    ident = training_identity(run, task, model, cfg, source, world)
    shipped = _shipped(run, task)
    if shipped is not None:
        from bench.pretrained import load
        loaded, why = load(shipped, model.trainable_module(), ident)
        if loaded:
            log(f"[weights] {run.model}: the project's shipped weights bench/weights/{shipped.file} (sha256 "
                f"{shipped.sha256[:16]}..., trained with `{shipped.command}`); --from-scratch trains instead")
            return shipped.label
        log(f"[weights] not using the shipped weights bench/weights/{shipped.file}: {why}; training")
    out = train_dir(run_dir, ident)
    if dist_info()[0] == 0:
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / "TRAIN.json", ident)  # what this directory's checkpoints were trained with
    log(f"[train] {run.model} on {task.name} ({source.label} data): {cfg.steps} steps at batch {cfg.batch_size} "
        f"into {out}")
    result = train(model, train_dataset(task, source, run.scale), cfg, out, device=device, log=log,
                   identity=ident, timing=timing)
    if result.losses:
        k = max(1, len(result.losses) // 10)
        first, last = sum(result.losses[:k]) / k, sum(result.losses[-k:]) / k
        log(f"[train] loss {first:.4f} (first {k} steps) -> {last:.4f} (last {k} steps)")
    return f"trained:{in_workdir(run, result.checkpoint)}:sha256:{sha256_file(result.checkpoint, 16)}"


def _shipped(run: RunConfig, task: Task):
    """The project's shipped weights for this run's model, task and scale, unless told to train
    (``--from-scratch``, or the ``train`` verb, which is how the shipped weights are reproduced)."""
    if run.from_scratch or run.checkpoint or run.train_only:
        return None
    from bench.pretrained import find
    return find(run.model, task.name, run.scale)


def in_workdir(run: RunConfig, path: Path) -> str:
    """A path under the work dir as records write it: the work dir made portable (``runs`` in the
    repository, ``$FARZOO_HOME/...``, or ``<outside>/<name>``), then the path inside it."""
    workdir = Path(run.workdir)
    try:
        rel = Path(path).relative_to(workdir)
    except ValueError:
        return portable(Path(path).absolute())
    return f"{portable(workdir.absolute())}/{rel.as_posix()}"


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- one process decides

def on_rank0(fn, *args, **kwargs):
    """Run ``fn`` on rank 0 only; a BenchError there is raised on every rank (the others stay quiet:
    ``python -m bench`` prints it from rank 0), so no process waits forever at a barrier."""
    rank, world = dist_info()
    result, message = None, None
    if rank == 0:
        try:
            result = fn(*args, **kwargs)
        except BenchError as e:
            if world == 1:
                raise
            message = str(e)
    if world > 1:
        import torch.distributed as dist
        box = [message]
        dist.broadcast_object_list(box, src=0)
        if box[0] is not None:
            raise BenchError(box[0])
    return result


# ----------------------------------------------------------------------------- one run per directory

class RunLock:
    """An exclusive ``fcntl.flock`` on ``<directory>/.lock``: one run at a time per run directory. The
    kernel drops the lock when the process ends, crash included, so a stale lock cannot exist.
    ``wait_s``: how long to wait for another holder (0: refuse at once; None: wait for ever)."""

    def __init__(self, directory: Path, wait_s: float | None = 0.0, log=print):
        self.directory, self.wait_s, self.log = Path(directory), wait_s, log
        self._file = None

    @property
    def path(self) -> Path:
        return self.directory / ".lock"

    def acquire(self) -> "RunLock":
        self.directory.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")
        deadline = None if self.wait_s is None else time.monotonic() + self.wait_s
        waiting = False
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = self.path.read_text().strip() or "another process"
                if deadline is not None and time.monotonic() >= deadline:
                    f.close()
                    raise RunLocked(
                        f"{self.directory} is in use by another run ({holder}); wait until it has finished, "
                        f"run this one with another --workdir, or let it wait with lock_wait_s=<seconds>") from None
                if not waiting:
                    self.log(f"[run] waiting for {self.directory}: in use by {holder}")
                    waiting = True
                time.sleep(0.2)
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()} since "
                f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}: {command_line()}\n")
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


@contextlib.contextmanager
def locked(directory: Path, wait_s: float | None = 0.0, log=print):
    """Hold ``directory``'s RunLock (taken by rank 0 for all the processes of a ``torchrun``)."""
    lock = RunLock(directory, wait_s, log) if dist_info()[0] == 0 else None
    on_rank0(lambda: lock.acquire() if lock is not None else None)
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


# ----------------------------------------------------------------------------- the run

def _store(run_dir: Path, ident: str, task: Task, scale: str, run: RunConfig, weights: str, config: dict) -> Path:
    """The sample store for this exact (task, scale, model identity); refuses a mismatched one."""
    store = run_dir / f"samples-{ident}"
    manifest = store / "STORE.json"
    want = {"task": task.name, "task_hash": task.hash(scale), "scale": scale, "model": run.model,
            "identity": ident, "weights": weights, "model_config": config}
    rank, _ = dist_info()
    if manifest.exists():
        have = json.loads(manifest.read_text())
        if have != want:
            raise RuntimeError(f"{manifest} belongs to another run: {have} != {want}")
    elif rank == 0:
        store.mkdir(parents=True, exist_ok=True)
        tmp = manifest.with_suffix(".tmp")
        tmp.write_text(json.dumps(want, indent=1))
        os.replace(tmp, manifest)
    barrier()
    return store


def model_run_dir(run: RunConfig, task: Task, name: str) -> Path:
    """``<workdir>/<task>__<scale>/<model>``: training directories and sample stores of one model."""
    return Path(run.workdir) / f"{task.name}__{run.scale}" / name


def evaluate_model(run: RunConfig, task: Task, model, name: str, weights: str, source: DataSource, device,
                   log=print) -> dict:
    """Sample into the store (this process's share), then score on rank 0. Returns the record fields."""
    from bench.evaluate import missing_samples, num_samples, sample_to_store, score_store
    from bench.progress import bar
    rank, world = dist_info()
    t_task = task.at_scale(run.scale)
    run_dir = model_run_dir(run, t_task, name)
    ident = identity(replace(run, model=name), model, weights, device)
    config = json.loads(json.dumps(model.config() if hasattr(model, "config") else {}, default=str))
    store = _store(run_dir, ident, t_task, run.scale, replace(run, model=name), weights, config)
    dataset = eval_dataset(t_task, source)
    show = run.progress and rank == 0
    missing, share = missing_samples(t_task, dataset, store, rank, world)
    if rank == 0:
        log(f"[sample] {name}: {missing} of {share} videos to sample ({_sample_counts(t_task)}"
            + (f"; {share - missing} already in the store, resumed" if missing < share and missing else "")
            + (", all already in the store" if not missing else "") + ")")
    t0 = time.perf_counter()
    made = sample_to_store(model, t_task, dataset, store, batch_size=run.sample_batch_size, rank=rank,
                           world=world, device=device, progress=lambda n: bar(n, f"sample {name}", "videos", show))
    barrier()
    log(f"[sample] {name}: {made} new samples in {time.perf_counter() - t0:.1f}s ({store})")
    if rank != 0:
        return {}
    metrics_names = "; ".join(f"part {p.name}: {', '.join(m.name for m in p.metrics)}" for p in t_task.parts)
    log(f"[score] {name}: scoring {len(t_task.parts) * len(t_task.seeds) * num_samples(t_task, dataset)} videos "
        f"({metrics_names})")
    metrics = score_store(t_task, dataset, store, device=device, log=log,
                          progress=lambda n: bar(n, f"score {name}", "videos", run.progress))
    return {"metrics": metrics, "store": str(store), "identity": ident, "dataset": dataset}


def _sample_counts(task: Task) -> str:
    def n(count: int, word: str, plural: str | None = None) -> str:
        return f"{count} {word if count == 1 else plural or word + 's'}"
    return " x ".join([n(len(task.parts), "part"), n(len(task.seeds), "seed"), n(task.num_videos, "video"),
                       n(task.trajectories, "trajectory", "trajectories")])


_COMMAND: list[str] | None = None  # the arguments ``python -m bench`` was given (set by bench.__main__)


def set_command(argv: list[str]) -> None:
    global _COMMAND
    _COMMAND = list(argv)


def command_line() -> str:
    """The command as a user would retype it: ``python -m bench <args>`` (paths made portable)."""
    if _COMMAND is not None:
        args = _COMMAND
    else:
        args = sys.argv[1:] if sys.argv and sys.argv[0].endswith(("bench/__main__.py", "bench")) else sys.argv
    return " ".join(["python -m bench", *(shlex.quote(portable_text(a)) for a in args)])


def build_model(run: RunConfig, task: Task, seed: int, device):
    """Seed every random stream, then build the model (its initial weights come from the seed, so the
    same command gives the same weights in any process). Options the network refuses are a ConfigError."""
    seed_everything(seed)
    try:
        model = get_model_factory(run.model)(task=task, scale=run.scale, **run.model_options)
    except ValueError as e:  # a combination of options the network refuses (e.g. head_dim vs RoPE axes)
        if isinstance(e, BenchError):
            raise
        opts = " ".join(f"model.{k}={v}" for k, v in run.model_options.items()) or "the defaults"
        raise ConfigError(f"model {run.model} cannot be built with {opts}: {one_line(e)}") from None
    if hasattr(model, "to"):
        model.to(device)
    return model


def run(run: RunConfig, log=print) -> list[Path]:
    """Do the whole run; returns the written record paths (rank 0) or [] (other ranks).

    Order: every option checked; the random streams seeded and the model built (so its initial
    weights are the same for the same command); a given checkpoint loaded; the directories checked
    writable; the run directory locked; the data checked; then training, sampling, scoring and the
    records. Everything before the lock writes nothing.
    """
    from bench.experiment import run_document, write_config
    from bench.progress import Log
    log = log if isinstance(log, Log) else Log(log)  # each notice once
    started = time.time()
    rank, world = dist_info()
    base_task, tcfg = check_options(run, world)
    task = base_task.at_scale(run.scale)
    device = torch.device(run.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = build_model(run, task, tcfg.seed, device)
    given = None
    if run.checkpoint and getattr(model, "trainable", False):  # a bad file is reported before other work
        given = f"sha256:{load_weights(model, Path(run.checkpoint))}"
    on_rank0(check_places, run, base_task)
    run_dir = model_run_dir(run, task, run.model)
    document = run_document(run)
    with locked(run_dir, wait_s=run.lock_wait_s, log=log):
        will_train = getattr(model, "trainable", False) and not run.checkpoint
        if rank == 0:
            log(f"[run] {run.model} on {task.name} at scale {run.scale!r} (protocol hash "
                f"{base_task.hash(run.scale)})" + ("; use --scale paper for the protocol itself"
                                                   if run.scale == "quick" else ""))
            write_config(run_dir, document)  # the resolved config, with the run
            log(_plan(run, task, model, tcfg, will_train))
        source = prepare_data(base_task, run.scale, run.data_root, log=log, progress=run.progress and rank == 0)
        on_rank0(check_data, task, source, train=will_train, deep=run.scale == "quick", log=log)
        # training clips at the run's scale (quick: the shrunken horizons and resolution)
        timing = _estimator(run, task, model, tcfg, started, log) if rank == 0 else None
        weights = obtain_weights(run, task, model, source, run_dir, device, tcfg=tcfg, given=given, log=log,
                                 timing=timing)
        if run.train_only:
            return []
        return _evaluate_and_record(run, base_task, model, weights, source, device, started, tcfg, log, document)


def _plan(run: RunConfig, task: Task, model, tcfg: TrainConfig, will_train: bool) -> str:
    """What the run will do, phase by phase (printed before any of it)."""
    per_model = len(task.parts) * len(task.seeds) * task.num_videos * task.trajectories
    models = [run.model] + (["dummy"] if run.compare_dummy and run.model != "dummy" else [])
    shipped = _shipped(run, task) if will_train else None
    weights = (f"the shipped weights bench/weights/{shipped.file} if this run's training configuration is theirs "
               f"(`{shipped.command}`; --from-scratch trains instead), else train {tcfg.steps} steps at batch "
               f"{tcfg.batch_size}" if shipped is not None
               else f"train {tcfg.steps} steps at batch {tcfg.batch_size} (reused if trained before with the same "
               f"configuration; an estimate of the run's time follows its first steps)" if will_train
               else f"checkpoint {run.checkpoint}" if run.checkpoint and getattr(model, "trainable", False)
               else "none (nothing to train)")
    return (f"[run] plan: data -> weights: {weights} -> sample {per_model} videos per model "
            f"({_sample_counts(task)}) for {' and '.join(models)} -> score them -> record, grid"
            + (", per-frame curve" if task.num_frames > 16 else "") + " and table row")


def _estimator(run: RunConfig, task: Task, model, tcfg: TrainConfig, started: float, log):
    """``timing(seconds_per_step, steps_left)`` for ``bench.train.train``: logs an estimate of the
    rest of the run from the measured step time (sampling from the model's FLOPs per clip)."""
    from bench.api import Clip
    from bench.progress import duration
    try:
        train_flops = model.cost(Clip(frames=task.num_frames, height=task.resolution, width=task.resolution)) \
            .train_flops_per_clip * tcfg.batch_size
        sample_flops = sum(model.cost(Clip(frames=p.context_frames + p.predict_frames, height=task.resolution,
                                           width=task.resolution, context_frames=p.context_frames))
                           .sample_flops_per_clip for p in task.parts) \
            * len(task.seeds) * task.num_videos * task.trajectories
    except Exception:  # noqa: BLE001 -- no cost model: the estimate covers training only
        train_flops = sample_flops = 0.0

    def timing(seconds: float, steps_left: int) -> None:
        train_s = seconds * steps_left
        text = f"[estimate] {seconds:.2f} s per training step: training ~{duration(train_s)} to go"
        sample_s = seconds * sample_flops / train_flops if train_flops > 0 and sample_flops > 0 else 0.0
        if sample_s:
            text += f", sampling ~{duration(sample_s)} (from the model's FLOPs)"
        total = time.time() - started + train_s + sample_s
        log(text + f"; the whole run ~{duration(total)} plus scoring (an estimate; the bars show the rest)")
    return timing


def _evaluate_and_record(run: RunConfig, base_task: Task, model, weights: str, source: DataSource, device,
                         started: float, tcfg: TrainConfig, log=print, document: dict | None = None) -> list[Path]:
    from bench.conventions import record_conventions
    from bench.experiment import config_hash, run_document
    from bench.results import RunRecord, collect_provenance, write_record
    rank, world = dist_info()
    task = base_task.at_scale(run.scale)
    entries = [(run.model, model, weights)]
    if run.compare_dummy and run.model != "dummy":
        entries.append(("dummy", get_model_factory("dummy")(task=task, scale=run.scale), "none"))
    paths, rows, evaluated = [], [], []
    for name, m, w in entries:
        t0 = time.time()
        # another model's run directory (the dummy's): wait for whoever evaluates it right now
        with locked(model_run_dir(run, task, name), wait_s=None, log=log) if name != run.model \
                else contextlib.nullcontext():
            out = evaluate_model(run, base_task, m, name, w, source, device, log=log)
        evaluated.append((name, m, w, out, time.time() - (started if name == run.model else t0)))
    if rank == 0:
        _reference_intervals(run, base_task, source, {name: out for name, _, _, out, _ in evaluated}, device, log)
    for name, m, w, out, wall in evaluated:
        if rank != 0:
            continue
        grid = _grid(run, task, out["store"], out["dataset"], name)
        extra = {"sample_store": in_workdir(run, Path(out["store"])), "world_size": world,
                 "cost": asdict(m.cost(_clip(task))), **record_conventions(base_task, run.scale, m, device, w)}
        if w.startswith(("trained:", "shipped:")):  # shipped weights: trained with exactly this recipe
            extra["train"] = config_identity(tcfg)
        if w.startswith("shipped:"):
            extra["weights_command"] = _shipped(run, task).command
        doc = document if name == run.model and document is not None else \
            run_document(replace(run, model=name, model_options={} if name != run.model else run.model_options))
        record = RunRecord(
            task=task.name, task_spec=base_task.spec(run.scale), task_hash=base_task.hash(run.scale),
            scale=run.scale, data=source.label, data_root=str(Path(source.root).absolute()), model=name,
            model_config=m.config() if hasattr(m, "config") else {}, checkpoint=w,
            seeds=list(task.seeds),
            counts={"videos": task.num_videos, "trajectories": task.trajectories,
                    "frames": task.num_frames},
            metrics=out["metrics"], wall_time_s=wall,
            started=started, finished=time.time(), command=command_line(), extra=extra,
            config=doc, config_hash=config_hash(doc), **collect_provenance(device))
        try:
            path = write_record(record, Path(run.results) / "runs", grid=grid, curve=has_curves(out["metrics"]))
        finally:
            grid.unlink(missing_ok=True)  # renamed by write_record unless it failed
        paths.append(path)
        rows.append(record)
    if rank == 0:
        from bench.results import load_record
        written = [load_record(path) for path in paths]
        for path, rec in zip(paths, written):  # every model with a record on this task, scale and data, one line each
            if rec.extra.get("curve"):
                render_task_curves(path.parent, rec)
        log(leaderboard_rows(rows, notes=False))
        log(run_summary(paths, written))
    return paths


def run_summary(paths: list[Path], records: list) -> str:
    """The end of a run: per model its interval against dummy, its seen/new split and where its record,
    grid and curve are."""
    lines = []
    for path, rec in zip(paths, records):
        per_metric = [(k, m) for k, m in rec.metrics.items() if isinstance(m, dict) and "mean" in m]
        intervals = [f"{k} {m['vs_reference']['ci'][0]:+.3g} to {m['vs_reference']['ci'][1]:+.3g}"
                     for k, m in per_metric if (m.get("vs_reference") or {}).get("ci")]
        if intervals:
            ref = next(m["vs_reference"].get("reference", "dummy") for _, m in per_metric if m.get("vs_reference"))
            lines.append(f"[run] {rec.model} minus {ref}, 95% interval (paired bootstrap over videos): "
                         + "; ".join(intervals))
        else:
            why = next(((m.get("vs_reference") or {}).get("unavailable") for _, m in per_metric
                        if (m.get("vs_reference") or {}).get("unavailable")), None)
            if why:
                lines.append(f"[run] {rec.model}: no interval against dummy ({why})")
        splits = [f"{k} seen {m['seen']['mean']:.4g} / new {m['new']['mean']:.4g}" for k, m in per_metric
                  if (m.get("seen") or {}).get("mean") is not None and (m.get("new") or {}).get("mean") is not None]
        split = next((m["split"] for _, m in per_metric if "split" in m), None)
        if splits and split:
            lines.append(f"[run] {rec.model} seen/new frames (rule {split['rule']}: {split['seen_frames']} seen, "
                         f"{split['new_frames']} new): " + "; ".join(splits))
        unavailable = [k for k, m in rec.metrics.items() if isinstance(m, dict) and "unavailable" in m]
        if unavailable:
            lines.append(f"[run] {rec.model}: {', '.join(unavailable)} n/a (unavailable, see the notice above)")
        where = [f"record {path}"]
        for key in ("grid", "curve"):
            if rec.extra.get(key):
                where.append(f"{key} {path.parent / rec.extra[key]}")
        lines.append(f"[run] {rec.model}: " + "; ".join(where))
    lines.append("[run] tables: `python -m bench table` rebuilds results/<task>.md from every record")
    return "\n".join(lines)


def _clip(task: Task):
    from bench.api import Clip
    part = task.parts[0]
    return Clip(frames=part.context_frames + part.predict_frames, height=task.resolution,
                width=task.resolution, context_frames=part.context_frames)


def _grid(run: RunConfig, task: Task, store: str, dataset, name: str) -> Path:
    """The grid image in a temporary file; ``write_record`` names it after the record."""
    from bench.grid import grid_for_store
    path = Path(run.results) / "runs" / "grids" / f".pending-{os.getpid()}-{task.name}__{name}__{run.scale}.png"
    return grid_for_store(task, dataset, Path(store), path, model=name, scale=run.scale)


def _reference_intervals(run: RunConfig, task: Task, source: DataSource, outs: dict, device, log=print) -> None:
    """Every evaluated model's paired-bootstrap interval against ``dummy`` (scored in this run, or from
    its latest sample store of this protocol in the workdir)."""
    from bench.compare import REFERENCE_MODEL, add_reference_intervals
    ref = outs.get(REFERENCE_MODEL, {}).get("metrics")
    why = ""
    if ref is None and any(name != REFERENCE_MODEL for name in outs):
        ref, why = _stored_reference(run, task, source, device, log)
    for name, out in outs.items():
        if name != REFERENCE_MODEL:
            add_reference_intervals(out["metrics"], ref, why_missing=why)


def _stored_reference(run: RunConfig, task: Task, source: DataSource, device, log=print) -> tuple[dict | None, str]:
    """Scores of the reference model's latest store of this protocol and scale, or (None, why not)."""
    from bench.compare import REFERENCE_MODEL
    from bench.evaluate import score_store
    run_dir = model_run_dir(run, task.at_scale(run.scale), REFERENCE_MODEL)
    for manifest in sorted(run_dir.glob("samples-*/STORE.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        if json.loads(manifest.read_text()).get("task_hash") == task.hash(run.scale):
            t_task = task.at_scale(run.scale)
            log(f"[score] {REFERENCE_MODEL} for the intervals: scoring {portable_text(str(manifest.parent))}")
            return score_store(t_task, eval_dataset(t_task, source), manifest.parent, device=device,
                               log=lambda _: None), ""
    return None, (f"no {REFERENCE_MODEL} samples of protocol {task.hash(run.scale)} in the work dir: run without "
                  f"--no-dummy (or `bench run --model {REFERENCE_MODEL}`) for the interval")


def _fmt(m: dict) -> str:
    if "unavailable" in m or "not_applicable" in m:
        return "n/a"
    text = f"{m['mean']:.4g}" + (f" ± {m['std']:.2g}" if m.get("n", 1) > 1 else "")
    ci = (m.get("vs_reference") or {}).get("ci")
    if ci:
        text += f" [{ci[0]:+.3g}, {ci[1]:+.3g}] vs {m['vs_reference']['reference']}"
    for split in ("seen", "new"):
        if (m.get(split) or {}).get("mean") is not None:
            text += f"; {split} {m[split]['mean']:.4g}"
    return text


def leaderboard_rows(records: list, notes: bool = True) -> str:
    """A markdown table of this run's rows (the full leaderboards come from ``bench table``); ``notes``:
    with the unavailable/not-applicable notes and the seen/new counts under it."""
    if not records:
        return ""
    names = list(records[0].metrics)
    head = ["model", "data", "scale", "hash", *names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        lines.append("| " + " | ".join([r.model, r.data, r.scale, r.task_hash,
                                         *(_fmt(r.metrics.get(n, {"unavailable": ""})) for n in names)]) + " |")
    if not notes:
        return "\n".join(lines)
    notes = [f"{n}: unavailable ({m['unavailable']}); provide with `{m['provide']}`"
             for n, m in records[0].metrics.items() if "unavailable" in m]
    notes += [f"{n}: not applicable ({m['not_applicable']})" for n, m in records[0].metrics.items()
              if "not_applicable" in m]
    split = next((m["split"] for m in records[0].metrics.values() if isinstance(m, dict) and "split" in m), None)
    if split:
        notes.append(f"seen/new frames (rule {split['rule']}): {split['seen_frames']} seen, {split['new_frames']} new; "
                     f"{split['videos_with_seen']} videos have seen frames")
    return "\n".join(lines + notes)


def score(run: RunConfig, log=print) -> list[Path]:
    """Recompute the metrics of the latest sample store of (model, task, scale); write a new record."""
    from bench.evaluate import score_store
    from bench.results import RunRecord, collect_provenance, write_record
    validate(run)
    base_task = get_task(run.task)
    task = base_task.at_scale(run.scale)
    check_writable(Path(run.results) / "runs", "results dir (--results)")
    run_dir = model_run_dir(run, task, run.model)
    stores = sorted(run_dir.glob("samples-*/STORE.json"), key=lambda p: p.stat().st_mtime)
    if not stores:
        raise BenchError(f"no sample store under {run_dir}: run `python -m bench run --model {run.model} "
                         f"--task {run.task} --scale {run.scale}` first")
    manifest = json.loads(stores[-1].read_text())
    if manifest["task_hash"] != base_task.hash(run.scale):
        raise BenchError(f"{stores[-1]}: samples were made for protocol hash {manifest['task_hash']}, the task "
                         f"is now {base_task.hash(run.scale)}; sample again with `bench run`")
    from bench.progress import Log, bar
    log = log if isinstance(log, Log) else Log(log)
    source = prepare_data(base_task, run.scale, run.data_root, log=log, progress=run.progress)
    device = torch.device(run.device or "cpu")
    t0 = time.time()
    dataset = eval_dataset(task, source)
    metrics = score_store(task, dataset, stores[-1].parent, device=device, log=log,
                          progress=lambda n: bar(n, f"score {run.model}", "videos", run.progress))
    _reference_intervals(run, base_task, source, {run.model: {"metrics": metrics}}, device, log)
    record = RunRecord(
        task=task.name, task_spec=base_task.spec(run.scale), task_hash=base_task.hash(run.scale), scale=run.scale,
        data=source.label, data_root=str(Path(source.root).absolute()), model=run.model,
        model_config=manifest["model_config"],
        checkpoint=manifest["weights"], seeds=list(task.seeds),
        counts={"videos": task.num_videos, "trajectories": task.trajectories, "frames": task.num_frames},
        metrics=metrics, wall_time_s=time.time() - t0, started=t0, finished=time.time(),
        command=command_line(), extra={"sample_store": in_workdir(run, stores[-1].parent), "rescored": True,
                                       "seed_kind": base_task.seed_kind},
        **collect_provenance(device))
    path = write_record(record, Path(run.results) / "runs")
    log(leaderboard_rows([record], notes=False))
    log(run_summary([path], [record]))
    return [path]
