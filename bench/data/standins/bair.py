"""BAIR robot pushing stand-in: a robot gripper pushing objects around a table, 30 frames at 64x64.

A dark gripper on an arm moves between random waypoints over a textured table, sometimes lowered
to table height, and pushes the coloured objects it touches (objects also push each other).
Every trajectory is a pure function of ``(seed, split, index)``. Two cameras are rendered like the
real data's: ``image_aux1`` (the one every prediction codebase uses) and ``image_main`` (another
viewpoint: mirrored, seen from further back, warmer light).

Layouts (root = ``datasets/bair``), both holding the same trajectories:

- the original download: ``softmotion30_44k/{train,test}/traj_<a>_to_<b>.tfrecords``, 256
  ``tf.train.Example`` records per file, keys ``{t}/image_aux1/encoded``, ``{t}/image_main/encoded``
  (raw RGB bytes, 64x64x3), ``{t}/action`` (4 floats: commanded x, y, z velocity in [-1, 1] and the
  gripper command, 1 here) and ``{t}/endeffector_pos`` (3 floats: x, y, z in metres);
- FAR-style: ``processed/{train,test}/<tfrecord stem>/<k>/{video.mp4, actions.npy,
  endeffector_pos.npy}`` (H.264, 10 fps, ``image_aux1``) listed in ``bair_{train,val}.json``
  (the fixture's naming; FAR's own is not public).
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from bench.data import tfrecord
from bench.data.standins.files import write_json_list, write_mp4

FRAMES, SIZE = 30, 64
PER_FILE = 256  # trajectories per TFRecord file, as the real test file traj_0_to_255
FPS = 10
SS = 2  # supersampling
X_RANGE, Y_RANGE, Z_RANGE = (0.45, 0.85), (-0.2, 0.2), (0.02, 0.25)
MAX_SPEED = 0.03  # metres per frame
GRIPPER_RADIUS = 0.03
PUSH_HEIGHT = 0.07  # the gripper pushes objects when lower than this


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(b"bair"), zlib.crc32(split.encode()), index])


# ----------------------------------------------------------------------------- dynamics


def simulate(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Gripper positions (T, 3), actions (T, 4), object positions (T, N, 2), radii (N,), colours (N, 3)."""
    n = int(rng.integers(3, 7))
    radii = rng.uniform(0.025, 0.045, n)
    colours = rng.uniform(0.1, 0.95, (n, 3))
    shapes = rng.integers(0, 2, n)  # 0 disc, 1 square
    objects = np.stack([rng.uniform(X_RANGE[0] + 0.05, X_RANGE[1] - 0.05, n),
                        rng.uniform(Y_RANGE[0] + 0.04, Y_RANGE[1] - 0.04, n)], axis=1)
    pos = np.array([rng.uniform(*X_RANGE), rng.uniform(*Y_RANGE), rng.uniform(0.1, 0.2)])
    vel = np.zeros(3)
    target, until = pos.copy(), 0
    grip, obj_traj, actions = [], [], []
    for t in range(FRAMES):
        if t >= until:  # a new waypoint, often next to an object and low, to push it
            if rng.random() < 0.6:
                k = int(rng.integers(n))
                ang = rng.uniform(0, 2 * np.pi)
                xy = objects[k] + 0.09 * np.array([np.cos(ang), np.sin(ang)])
                target = np.array([xy[0], xy[1], rng.uniform(0.02, 0.05)])
                target[:2] = 2 * objects[k] - target[:2]  # aim through the object
            else:
                target = np.array([rng.uniform(*X_RANGE), rng.uniform(*Y_RANGE), rng.uniform(*Z_RANGE)])
            until = t + int(rng.integers(6, 12))
        want = target - pos
        dist = np.linalg.norm(want)
        want = want / dist * min(dist, MAX_SPEED) if dist > 1e-9 else want
        vel = 0.5 * vel + 0.5 * want
        grip.append(pos.copy())
        obj_traj.append(objects.copy())
        actions.append(np.concatenate([np.clip(vel / MAX_SPEED, -1, 1), [1.0]]))
        pos = pos + vel
        pos[0], pos[1], pos[2] = np.clip(pos[0], *X_RANGE), np.clip(pos[1], *Y_RANGE), np.clip(pos[2], *Z_RANGE)
        if pos[2] < PUSH_HEIGHT:
            for k in range(n):
                d = objects[k] - pos[:2]
                gap = np.linalg.norm(d)
                need = radii[k] + GRIPPER_RADIUS
                if gap < need:
                    objects[k] = pos[:2] + (d / gap if gap > 1e-9 else np.array([1.0, 0.0])) * need
        for a in range(n):  # objects push each other apart
            for b in range(a + 1, n):
                d = objects[b] - objects[a]
                gap = np.linalg.norm(d)
                need = radii[a] + radii[b]
                if 1e-9 < gap < need:
                    shift = d / gap * (need - gap) / 2
                    objects[a] -= shift
                    objects[b] += shift
        objects[:, 0] = np.clip(objects[:, 0], X_RANGE[0] - 0.02, X_RANGE[1] + 0.02)
        objects[:, 1] = np.clip(objects[:, 1], Y_RANGE[0] - 0.02, Y_RANGE[1] + 0.02)
    return {"gripper": np.array(grip), "actions": np.array(actions), "objects": np.array(obj_traj),
            "radii": radii, "colours": colours, "shapes": shapes}


# ----------------------------------------------------------------------------- rendering


def _project(x, y, z, camera: int):
    """World (metres) -> (row, col, scale) in 64-pixel image units for camera 0 (aux1) or 1 (main)."""
    near = (X_RANGE[1] - x) / (X_RANGE[1] - X_RANGE[0])  # 0 far .. 1 near
    spread = 120 + 60 * near if camera == 0 else 100 + 40 * near
    col = 32 + y * spread
    if camera == 1:
        col = 64 - col
    row = (6 + 50 * near if camera == 0 else 10 + 42 * near) - z * (80 if camera == 0 else 65)
    scale = spread / 150
    return row, col, scale


def _table(rng: np.random.Generator, camera: int) -> np.ndarray:
    n = SIZE * SS
    yy, xx = np.mgrid[0:n, 0:n] / n
    base = np.array([0.78, 0.74, 0.68]) if camera == 0 else np.array([0.82, 0.72, 0.60])
    grain = 0.04 * np.sin(xx * 90 + 3 * np.sin(yy * 7)) + rng.uniform(-0.02, 0.02, (n, n))
    img = base[None, None] * (1 + grain[..., None]) * (0.85 + 0.15 * yy[..., None])
    edge = (xx < 0.05) | (xx > 0.95) | (yy < 0.06)
    img[edge] *= 0.6  # the bin's rim
    return img


def _clutter(rng: np.random.Generator) -> list[tuple[float, float, float, np.ndarray]]:
    """Small static background items (x, y, radius, colour)."""
    return [(rng.uniform(*X_RANGE), rng.uniform(*Y_RANGE), rng.uniform(0.008, 0.015), rng.uniform(0.2, 0.9, 3))
            for _ in range(int(rng.integers(4, 10)))]


def _disc(img, row, col, radius, colour, square=False, alpha=1.0):
    n = img.shape[0]
    r, c, rad = row * SS, col * SS, radius * SS
    y0, y1 = max(int(r - rad) - 2, 0), min(int(r + rad) + 3, n)
    x0, x1 = max(int(c - rad) - 2, 0), min(int(c + rad) + 3, n)
    if y0 >= y1 or x0 >= x1:
        return
    dy = np.arange(y0, y1)[:, None] + 0.5 - r
    dx = np.arange(x0, x1)[None, :] + 0.5 - c
    d = np.maximum(np.abs(dx), np.abs(dy)) if square else np.sqrt(dx * dx + dy * dy)
    a = (np.clip(rad + 0.5 - d, 0, 1) * alpha)[..., None]
    img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - a) + np.asarray(colour) * a


def _line(img, r0, c0, r1, c1, width, colour):
    for s in np.linspace(0, 1, 24):
        _disc(img, r0 + (r1 - r0) * s, c0 + (c1 - c0) * s, width / 2, colour)


def render(sim: dict[str, np.ndarray], rng: np.random.Generator, camera: int) -> np.ndarray:
    """uint8 (T, 64, 64, 3) frames of one camera."""
    table = _table(rng, camera)
    for x, y, rad, col in _clutter(rng):
        row, c, sc = _project(x, y, 0.0, camera)
        _disc(table, row, c, rad * 150 * sc * 0.7, col * 0.8)
    out = np.empty((FRAMES, SIZE, SIZE, 3), np.uint8)
    light = 1.0 if camera == 0 else 0.85
    for t in range(FRAMES):
        img = table.copy()
        for k in range(len(sim["radii"])):
            x, y = sim["objects"][t, k]
            row, col, sc = _project(x, y, 0.0, camera)
            rad = sim["radii"][k] * 150 * sc * 0.75
            _disc(img, row + 1.2, col + 0.8, rad, (0.2, 0.2, 0.2), bool(sim["shapes"][k]), alpha=0.35)
            _disc(img, row, col, rad, sim["colours"][k], bool(sim["shapes"][k]))
            _disc(img, row - rad * 0.3, col - rad * 0.3, rad * 0.35, np.minimum(sim["colours"][k] * 1.25, 1), alpha=0.6)
        gx, gy, gz = sim["gripper"][t]
        srow, scol, ssc = _project(gx, gy, 0.0, camera)
        _disc(img, srow, scol, 3.2 * ssc, (0.15, 0.15, 0.15), alpha=0.3 * (1 - gz / 0.4))  # shadow
        row, col, sc = _project(gx, gy, gz, camera)
        shoulder = (-8.0, 74.0 if camera == 0 else -10.0)
        _line(img, row - 2, col, shoulder[0], shoulder[1], 5.0 * sc, (0.22, 0.22, 0.25))
        _disc(img, row, col, 3.6 * sc, (0.12, 0.12, 0.14), square=True)
        _disc(img, row + 2.5 * sc, col - 2.2 * sc, 1.2 * sc, (0.3, 0.3, 0.32))  # fingers
        _disc(img, row + 2.5 * sc, col + 2.2 * sc, 1.2 * sc, (0.3, 0.3, 0.32))
        img = img.reshape(SIZE, SS, SIZE, SS, 3).mean(axis=(1, 3)) * light
        out[t] = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    return out


def trajectory(seed: int, split: str, index: int) -> dict[str, np.ndarray]:
    """``image_aux1`` and ``image_main`` uint8 (30, 64, 64, 3), ``action`` float32 (30, 4) and
    ``endeffector_pos`` float32 (30, 3) of one trajectory."""
    rng = _rng(seed, split, index)
    sim = simulate(rng)
    scene = rng.integers(2 ** 31)
    return {"image_aux1": render(sim, np.random.default_rng(scene), 0),
            "image_main": render(sim, np.random.default_rng(scene), 1),
            "action": sim["actions"].astype(np.float32),
            "endeffector_pos": sim["gripper"].astype(np.float32)}


# ----------------------------------------------------------------------------- files


def file_stems(count: int) -> list[tuple[str, int, int]]:
    """``(stem, first, last)`` of the TFRecord files holding ``count`` trajectories."""
    return [(f"traj_{a}_to_{min(a + PER_FILE, count) - 1}", a, min(a + PER_FILE, count))
            for a in range(0, count, PER_FILE)]


def write_file(root: str, folder: str, stem: str, first: int, end: int, seed: int) -> None:
    """One TFRecord file and the FAR-style folders of its trajectories."""
    root_path = Path(root)
    payloads = []
    for k, index in enumerate(range(first, end)):
        traj = trajectory(seed, folder, index)
        features = {}
        for t in range(FRAMES):
            features[f"{t}/action"] = traj["action"][t]
            features[f"{t}/endeffector_pos"] = traj["endeffector_pos"][t]
            features[f"{t}/image_aux1/encoded"] = traj["image_aux1"][t].tobytes()
            features[f"{t}/image_main/encoded"] = traj["image_main"][t].tobytes()
        payloads.append(tfrecord.serialize_example(features))
        out = root_path / "processed" / folder / stem / str(k)
        write_mp4(out / "video.mp4", traj["image_aux1"], FPS, codec="h264")
        np.save(out / "actions.npy", traj["action"])
        np.save(out / "endeffector_pos.npy", traj["endeffector_pos"])
    tfrecord.write_tfrecord(root_path / "softmotion30_44k" / folder / f"{stem}.tfrecords", payloads)


def _write_job(job: tuple) -> None:
    write_file(*job)


def write(root, *, num_train: int, num_eval: int, seed: int, map_fn=map) -> dict:
    root = Path(root)
    counts = {"train": num_train, "test": num_eval}
    jobs = [(str(root), folder, stem, a, b, seed) for folder in ("train", "test")
            for stem, a, b in file_stems(counts[folder])]
    for _ in map_fn(_write_job, jobs):
        pass
    for folder, name in (("train", "bair_train.json"), ("test", "bair_val.json")):
        entries = [{"video_path": f"processed/{folder}/{stem}/{k}/video.mp4",
                    "action_path": f"processed/{folder}/{stem}/{k}/actions.npy"}
                   for stem, a, b in file_stems(counts[folder]) for k in range(b - a)]
        write_json_list(root / name, entries)
    return {"frames": FRAMES, "resolution": SIZE, "layouts": ["tfrecord", "far"], "per_file": PER_FILE,
            "far_video": f"h264 yuv420p {FPS} fps"}
