"""FAR's training recipe per dataset, as the official train configs set it (showlab/FAR
``options/train/far/**.yml``): one table, read by ``bench train``'s paper-scale defaults
(``bench.run.default_train_config``), the FAR adapter's paper-scale config (short-term window) and
the training clips (``bench.data.TrainClipDataset``: horizontal flip), and written into the run
record of a model trained here. These change only models trained here, never the evaluation.

Every official config: AdamW (lr 1e-4, betas 0.9/0.999, no weight decay), EMA 0.9999, gradient
clipping 1.0, ``constant_with_warmup`` schedule, batch 4 per GPU x 8 GPUs = 32 (the ``bs32`` of the
file names). What differs per dataset is below. BAIR has one model for both of its protocols, trained
on 30-frame clips (``n_frames: 30``), so ``bair_pred14`` trains on 30 frames too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from bench.tasks import Task

TRAIN_CONFIGS = "showlab/FAR options/train/far/"


@dataclass(frozen=True)
class Recipe:
    source: str  # the official config file(s) the values come from
    steps: int  # total_iter
    warmup_steps: int  # warmup_iter of constant_with_warmup
    hflip: bool = False  # data_cfg.use_flip: random horizontal flip of a training clip, p = 0.5
    short_term_ctx_winsize: int = 16  # the transformer's short-term window (model default 16)
    batch_size: int = 32
    lr: float = 1e-4
    ema_decay: float = 0.9999
    schedule: str = "constant"  # lr_scheduler: constant_with_warmup (bench.train.lr_at)
    clip_frames: int | None = None  # training clip length when it differs from the evaluated clip's

    def as_record(self) -> dict:
        return asdict(self)


# (dataset, kind) -> recipe; kind is "generation" (no context frames) or "prediction".
RECIPES: dict[tuple[str, str], Recipe] = {
    ("ucf101", "generation"): Recipe(
        TRAIN_CONFIGS + "video_generation/FAR_L_ucf101_{cond,uncond}_res{128,256}_400K_bs32.yml "
        "(FAR_XL_* the same)", steps=400_000, warmup_steps=0, hflip=True),
    ("ucf101", "prediction"): Recipe(
        TRAIN_CONFIGS + "short_video_prediction/FAR_B_ucf101_res64_200K_bs32.yml",
        steps=200_000, warmup_steps=0, hflip=True),
    ("bair", "prediction"): Recipe(
        TRAIN_CONFIGS + "short_video_prediction/FAR_B_bair_res64_200K_bs32.yml",
        steps=200_000, warmup_steps=0, short_term_ctx_winsize=30, clip_frames=30),
    ("dmlab", "prediction"): Recipe(
        TRAIN_CONFIGS + "long_video_prediction/FAR_B_Long_dmlab_res64_400K_bs32.yml (total_iter 1000000 "
        "despite the file name; its name field says 1000K)", steps=1_000_000, warmup_steps=10_000),
    ("minecraft", "prediction"): Recipe(
        TRAIN_CONFIGS + "long_video_prediction/FAR_M_Long_minecraft_res128_1000K_bs32.yml",
        steps=1_000_000, warmup_steps=10_000),
    ("greenearthnet", "prediction"): Recipe(
        "none: FAR has no GreenEarthNet config; the harness's generic paper-scale default",
        steps=400_000, warmup_steps=5_000),
}


def task_kind(task: Task) -> str:
    return "generation" if task.parts[0].context_frames == 0 else "prediction"


def recipe_for(task: Task) -> Recipe:
    """The training recipe of ``task``'s dataset and kind (also for tasks derived from a registered one)."""
    key = (task.dataset, task_kind(task))
    if key not in RECIPES:
        raise KeyError(f"no training recipe for dataset {task.dataset!r} ({key[1]}) in bench.recipes.RECIPES; "
                       f"known: {sorted(RECIPES)}")
    return RECIPES[key]


# ----------------------------------------------------------------------------- quick scale

# ``quick`` runs on a CPU. The default: a few minutes. The long-context stand-ins get the recipe the
# project's shipped quick FAR-Long was trained with (``bench.pretrained``): long clips (the protocol's
# 144 context frames plus predictions) and more steps, about 50 minutes on one CPU core, which is why
# ``bench run`` samples the shipped weights unless told to train (``--from-scratch``).
QUICK_DEFAULT = dict(steps=600, batch_size=4, lr=1e-3, warmup_steps=50, ema_decay=0.995, schedule="cosine",
                     ckpt_every=100, log_every=10)
QUICK_RECIPES: dict[str, dict] = {
    "dmlab": dict(QUICK_DEFAULT, steps=2000, batch_size=4, warmup_steps=100, ema_decay=0.999, ckpt_every=250),
    "minecraft": dict(QUICK_DEFAULT, steps=2000, batch_size=4, warmup_steps=100, ema_decay=0.999, ckpt_every=250),
}


def quick_recipe(task: Task):
    """The ``TrainConfig`` of a quick-scale run of ``task``."""
    from bench.train import TrainConfig
    return TrainConfig(**QUICK_RECIPES.get(task.dataset, QUICK_DEFAULT))
