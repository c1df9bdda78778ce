"""UCF-101 stand-in: 101 classes of textured shapes moving over textured backgrounds.

Every class has its own background family and palette, actor shape and colour, motion pattern
(oscillation, bounce, orbit, drift, pulsing, pendulum, figure eight), tempo, number of companion
objects and camera pan, so a class-conditional model has something to learn and a label can be
told from a clip. Like the real groups (same actor and scene), clips of one group share the scene
variant; clips differ in phase, positions and length (48..120 frames at 25 fps).

Layout (FAR's, with the official split files; root = ``datasets/ucf101``)::

    UCF-101/<Class>/v_<Class>_g<GG>_c<CC>.mp4     H.264 yuv420p, 320x240, 25 fps
    train03.json  test03.json  trainval.json      [{"video_path": ..., "label": <0-based>}]
    ucfTrainTestlist/classInd.txt  trainlist03.txt  testlist03.txt   (official format, CRLF)

Only split 3 is written (the one FAR's configs use); test clips are groups 15-21 as in the real
split 3, training clips the other groups. The real ``HandStandPushups`` quirk is kept: classInd
says ``HandStandPushups``, the folder is ``HandstandPushups``, the files ``v_HandStandPushups_...``.
Clips are listed class by class in classInd order, as the real lists are.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np

from bench.data.standins.files import write_json_list, write_lines, write_mp4

CLASSES = """ApplyEyeMakeup ApplyLipstick Archery BabyCrawling BalanceBeam BandMarching BaseballPitch Basketball
BasketballDunk BenchPress Biking Billiards BlowDryHair BlowingCandles BodyWeightSquats Bowling
BoxingPunchingBag BoxingSpeedBag BreastStroke BrushingTeeth CleanAndJerk CliffDiving CricketBowling
CricketShot CuttingInKitchen Diving Drumming Fencing FieldHockeyPenalty FloorGymnastics
FrisbeeCatch FrontCrawl GolfSwing Haircut Hammering HammerThrow HandStandPushups HandstandWalking
HeadMassage HighJump HorseRace HorseRiding HulaHoop IceDancing JavelinThrow JugglingBalls
JumpingJack JumpRope Kayaking Knitting LongJump Lunges MilitaryParade Mixing MoppingFloor Nunchucks
ParallelBars PizzaTossing PlayingCello PlayingDaf PlayingDhol PlayingFlute PlayingGuitar
PlayingPiano PlayingSitar PlayingTabla PlayingViolin PoleVault PommelHorse PullUps Punch PushUps
Rafting RockClimbingIndoor RopeClimbing Rowing SalsaSpin ShavingBeard Shotput SkateBoarding Skiing
Skijet SkyDiving SoccerJuggling SoccerPenalty StillRings SumoWrestling Surfing Swing
TableTennisShot TaiChi TennisSwing ThrowDiscus TrampolineJumping Typing UnevenBars
VolleyballSpiking WalkingWithDog WallPushups WritingOnBoard YoYo""".split()
assert len(CLASSES) == 101
FOLDER = {name: ("HandstandPushups" if name == "HandStandPushups" else name) for name in CLASSES}
TEST_GROUPS = tuple(range(15, 22))  # split 3
TRAIN_GROUPS = tuple(g for g in range(1, 26) if g not in TEST_GROUPS)
REAL_TEST_SIZE = 3696  # testlist03
FPS = 25
HEIGHT, WIDTH = 240, 320
MIN_FRAMES, MAX_FRAMES = 48, 120
EVAL_STRIDE = 10  # FAR evaluates test03.json[::10]


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(b"ucf101"), *key])


# ----------------------------------------------------------------------------- classes and clips


def class_spec(seed: int, label: int) -> dict:
    """The look and motion of class ``label`` (a pure function of seed and label)."""
    rng = _rng(seed, 1, label)
    return {
        "background": int(rng.integers(5)),
        "palette": rng.uniform(0.08, 0.92, size=(3, 3)),
        "shape": int(rng.integers(6)),
        "colour": rng.uniform(0.05, 1.0, size=3),
        "radius": float(rng.uniform(0.08, 0.18)),  # of the frame height
        "motion": int(rng.integers(7)),
        "freq": float(rng.uniform(0.02, 0.10)),  # cycles per frame
        "amplitude": float(rng.uniform(0.15, 0.35)),  # of the frame width
        "companions": int(rng.integers(0, 4)),
        "pan": float(rng.choice([0.0, 0.0, rng.uniform(0.5, 3.0), -rng.uniform(0.5, 3.0)])),  # px/frame at 320
        "spin": float(rng.uniform(-0.15, 0.15)),
    }


def _background(rng: np.random.Generator, spec: dict, h: int, w: int) -> np.ndarray:
    """(h, w, 3) float32 background of the class's family, varied per group."""
    pal = np.clip(spec["palette"] + rng.uniform(-0.08, 0.08, size=(3, 3)), 0, 1).astype(np.float32)
    y = (np.arange(h, dtype=np.float32)[:, None] + 0.5) / h
    x = (np.arange(w, dtype=np.float32)[None, :] + 0.5) / h  # aspect-correct units
    kind = spec["background"]
    if kind == 0:  # sky over ground
        horizon = rng.uniform(0.35, 0.65)
        t = np.clip((y - horizon) * 40, 0, 1)[..., None]
        sky = pal[0] * (1 - 0.4 * y[..., None]) + 0.1
        ground = pal[1] * (0.8 + 0.2 * (np.sin(x * 37 + y * 11) > 0))[..., None]
        img = sky * (1 - t) + ground * t
    elif kind == 1:  # vertical stripes (walls, lanes)
        period = rng.uniform(0.15, 0.4)
        s = ((x / period) % 1.0 < 0.5)[..., None]
        img = np.where(s, pal[0], pal[1]) * (0.85 + 0.15 * y[..., None])
    elif kind == 2:  # floor tiles
        period = rng.uniform(0.12, 0.3)
        s = ((np.floor(x / period) + np.floor(y / period)) % 2 == 0)[..., None]
        img = np.where(s, pal[0], pal[2])
    elif kind == 3:  # gradient with soft blobs
        img = pal[0] * (1 - y[..., None]) + pal[1] * y[..., None]
        for _ in range(6):
            cx, cy, r = rng.uniform(0, w / h), rng.uniform(0, 1), rng.uniform(0.05, 0.2)
            blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))[..., None]
            img = img * (1 - 0.6 * blob) + pal[2] * 0.6 * blob
    else:  # horizontal bands (water, stands)
        period = rng.uniform(0.08, 0.25)
        wave = np.sin((y / period + 0.3 * np.sin(x * 6)) * 2 * math.pi)[..., None]
        img = pal[0] * (0.8 + 0.2 * wave) + pal[2] * 0.15
    noise = rng.uniform(-0.03, 0.03, size=(h // 4 + 1, w // 4 + 1, 1)).astype(np.float32)
    img = img + np.kron(noise, np.ones((4, 4, 1), np.float32))[:h, :w]
    return np.clip(img, 0, 1).astype(np.float32)


def _sdf(shape: int, dx: np.ndarray, dy: np.ndarray, r: float, angle: float) -> np.ndarray:
    """Signed distance (pixels) to a shape of size ``r`` centred at the origin."""
    c, s = math.cos(angle), math.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy
    if shape == 0:  # disc
        return np.sqrt(u * u + v * v) - r
    if shape == 1:  # square
        return np.maximum(np.abs(u), np.abs(v)) - r * 0.85
    if shape == 2:  # ring
        return np.abs(np.sqrt(u * u + v * v) - r * 0.7) - r * 0.3
    if shape == 3:  # ellipse (upright body)
        return (np.sqrt(u * u * 2.2 + v * v * 0.55) - r)
    if shape == 4:  # cross
        a = np.maximum(np.abs(u) - r, np.abs(v) - r * 0.33)
        b = np.maximum(np.abs(u) - r * 0.33, np.abs(v) - r)
        return np.minimum(a, b)
    # triangle (upward)
    k = math.sqrt(3.0)
    return np.maximum(np.abs(u) * k / 2 + v / 2, -v) - r * 0.5


def _path(motion: int, t: np.ndarray, freq: float, phase: float, amp: float, w: float, h: float,
          base: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre x, y (pixels) and scale of the actor at frames ``t``."""
    a = 2 * math.pi * freq * t + phase
    bx, by = base
    scale = np.ones_like(t)
    if motion == 0:  # side to side
        x, y = bx + amp * w * np.sin(a), by + 0 * t
    elif motion == 1:  # bounce
        x, y = bx + 0 * t, by + 0.25 * h - 0.45 * h * np.abs(np.sin(a))
    elif motion == 2:  # orbit
        x, y = bx + amp * w * np.cos(a), by + amp * h * np.sin(a)
    elif motion == 3:  # drift across, wrapping
        x = (bx + freq * 6 * w * t + phase * w) % (w * 1.2) - 0.1 * w
        y = by + 0.05 * h * np.sin(a)
    elif motion == 4:  # pulse in place
        x, y = bx + 0 * t, by + 0 * t
        scale = 1 + 0.45 * np.sin(a)
    elif motion == 5:  # pendulum
        ang = 0.9 * np.sin(a)
        x, y = bx + 0.35 * h * np.sin(ang), by - 0.3 * h + 0.35 * h * np.cos(ang)
    else:  # figure eight
        x, y = bx + amp * w * np.sin(a), by + 0.5 * amp * h * np.sin(2 * a)
    return x, y, scale


def clip(seed: int, label: int, group: int, index: int, height: int = HEIGHT) -> np.ndarray:
    """uint8 (T, H, W, 3) frames of clip ``v_<class>_g<group>_c<index>``; T in 48..120."""
    width = int(round(height * WIDTH / HEIGHT / 2)) * 2
    spec = class_spec(seed, label)
    scene = _rng(seed, 2, label, group)  # shared by the clips of a group
    take = _rng(seed, 3, label, group, index)
    frames = int(take.integers(MIN_FRAMES, MAX_FRAMES + 1))
    pan = spec["pan"] * width / WIDTH * take.uniform(0.8, 1.2)
    travel = int(math.ceil(abs(pan) * (frames - 1))) + 1
    background = _background(scene, spec, height, width + travel)
    t = np.arange(frames, dtype=np.float64)
    offsets = np.round(t * abs(pan)).astype(np.int64)
    if pan < 0:
        offsets = travel - 1 - offsets
    colour = np.clip(spec["colour"] + scene.uniform(-0.1, 0.1, 3), 0, 1).astype(np.float32)
    actors = []
    base = (width * take.uniform(0.4, 0.6), height * take.uniform(0.45, 0.6))
    phase = take.uniform(0, 2 * math.pi)
    radius = spec["radius"] * height * scene.uniform(0.85, 1.15)
    actors.append((spec["shape"], colour, radius, _path(spec["motion"], t, spec["freq"], phase, spec["amplitude"],
                                                        width, height, base)))
    for k in range(spec["companions"]):
        c2 = np.clip(colour * 0.5 + spec["palette"][2] * 0.5 + take.uniform(-0.1, 0.1, 3), 0, 1).astype(np.float32)
        off = (take.uniform(-0.3, 0.3) * width, take.uniform(-0.2, 0.2) * height)
        actors.append(((spec["shape"] + k + 1) % 6, c2, radius * 0.5,
                       _path(spec["motion"], t, spec["freq"], phase + (k + 1) * 2.1, spec["amplitude"] * 0.6,
                             width, height, (base[0] + off[0], base[1] + off[1]))))
    out = np.empty((frames, height, width, 3), np.uint8)
    for i in range(frames):
        img = background[:, offsets[i]:offsets[i] + width].copy()
        for shape, col, r, (xs, ys, scale) in actors:
            rr = r * float(scale[i])
            cx, cy = float(xs[i]), float(ys[i])
            x0, x1 = max(int(cx - 1.5 * rr) - 2, 0), min(int(cx + 1.5 * rr) + 3, width)
            y0, y1 = max(int(cy - 1.5 * rr) - 2, 0), min(int(cy + 1.5 * rr) + 3, height)
            if x0 >= x1 or y0 >= y1:
                continue
            dy = (np.arange(y0, y1, dtype=np.float32) + 0.5 - cy)[:, None]
            dx = (np.arange(x0, x1, dtype=np.float32) + 0.5 - cx)[None, :]
            d = _sdf(shape, dx, dy, rr, spec["spin"] * i)
            alpha = np.clip(0.5 - d, 0, 1)[..., None]
            light = np.clip(1.0 - 0.35 * (dy + dx * 0.3) / max(rr, 1.0), 0.55, 1.3)[..., None]
            patch = img[y0:y1, x0:x1]
            img[y0:y1, x0:x1] = patch * (1 - alpha) + np.clip(col * light, 0, 1) * alpha
        out[i] = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    return out


# ----------------------------------------------------------------------------- lists and files


def _split_clips(count: int, groups: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """``count`` (label, group, clip) triples spread evenly over the classes, in list order."""
    out = []
    for label in range(len(CLASSES)):
        n = count // len(CLASSES) + (1 if label < count % len(CLASSES) else 0)
        mine = sorted((groups[j % len(groups)], j // len(groups) + 1) for j in range(n))
        out += [(label, g, c) for g, c in mine]
    return out


def clip_name(label: int, group: int, index: int) -> str:
    return f"v_{CLASSES[label]}_g{group:02d}_c{index:02d}"


def test_list_size(num_eval: int) -> int:
    """FAR evaluates every 10th clip of test03: the test list holds 10 x ``num_eval`` clips (at
    most testlist03's 3,696), so the prediction tasks find ``num_eval`` clips."""
    return min(EVAL_STRIDE * num_eval, REAL_TEST_SIZE)


def write_item(root: str, seed: int, label: int, group: int, index: int, height: int) -> None:
    path = Path(root) / "UCF-101" / FOLDER[CLASSES[label]] / f"{clip_name(label, group, index)}.mp4"
    write_mp4(path, clip(seed, label, group, index, height), FPS, codec="h264")


def _write_job(job: tuple) -> None:
    write_item(*job)


def write(root, *, num_train: int, num_eval: int, seed: int, height: int | None = None, map_fn=map) -> dict:
    """Clips, FAR's JSON lists and the official split-3 list files under ``root``."""
    root = Path(root)
    height = height or HEIGHT
    train = _split_clips(num_train, TRAIN_GROUPS)
    test = _split_clips(test_list_size(num_eval), TEST_GROUPS)
    jobs = [(str(root), seed, label, g, c, height) for label, g, c in train + test]
    for _ in map_fn(_write_job, jobs):
        pass

    def rel(label: int, g: int, c: int, ext: str) -> str:
        return f"{FOLDER[CLASSES[label]]}/{clip_name(label, g, c)}.{ext}"

    def entries(clips):
        return [{"video_path": f"UCF-101/{rel(label, g, c, 'mp4')}", "label": label} for label, g, c in clips]

    write_json_list(root / "train03.json", entries(train))
    write_json_list(root / "test03.json", entries(test))
    write_json_list(root / "trainval.json", entries(train) + entries(test))
    lists = root / "ucfTrainTestlist"
    write_lines(lists / "classInd.txt", [f"{i + 1} {name}" for i, name in enumerate(CLASSES)])
    write_lines(lists / "trainlist03.txt", [f"{rel(label, g, c, 'avi')} {label + 1}" for label, g, c in train])
    write_lines(lists / "testlist03.txt", [rel(label, g, c, "avi") for label, g, c in test], final_newline=False)
    return {"resolution": [height, int(round(height * WIDTH / HEIGHT / 2)) * 2], "fps": FPS,
            "frames": [MIN_FRAMES, MAX_FRAMES], "train_clips": len(train), "test_clips": len(test),
            "split": 3, "codec": "h264 yuv420p"}
