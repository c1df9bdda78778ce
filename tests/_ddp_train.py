"""Launched by tests/test_harness.py under torchrun: trains a tiny FAR with DDP on 2 CPU processes."""
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_harness import moving_videos, tiny_far, tiny_task  # noqa: E402

from bench.train import TrainConfig, dist_info, train  # noqa: E402

out = Path(sys.argv[1])
rank, world = dist_info()
torch.manual_seed(0)
model = tiny_far(tiny_task().at_scale("quick"))
cfg = TrainConfig(steps=4, batch_size=4, lr=1e-3, warmup_steps=1, ckpt_every=2, progress=False)
result = train(model, moving_videos(8, seed=2), cfg, out / "ckpt", device="cpu", log=lambda s: None)
flat = torch.cat([p.detach().flatten() for p in model.trainable_module().parameters()])
(out / f"rank{rank}.json").write_text(json.dumps({"world": world, "losses": result.losses,
                                                  "param_sum": flat.double().sum().item()}))
