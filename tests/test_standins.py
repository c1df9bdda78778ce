"""Procedural stand-in datasets (bench.data.standins): determinism, the protocols' shapes and
action sets, the maze's revisits, the real file formats, and round trips through the real loaders."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from bench.data.standins import (MARKER, STANDIN_VERSION, bair as sbair, greenearthnet as sgen, is_standin,
                                 materialize, maze, standin_info, ucf101 as sucf)
from bench.data.standins.files import rgb_to_yuv420p, save_npz, write_mp4
from bench.tasks import TASKS

SHARED = Path(os.environ.get("FAR_SHARED_DIR", Path(__file__).parents[1].parent / "shared"))
FIX = SHARED / "fixtures" / "datasets"
GEN_FIXTURE = FIX / "greenearthnet/ood-t_chopped/MJJ21/32ULB_2021-05-01_2021-09-27_1977_2105_1721_1849_30_110_26_106.nc"

# small sizes used by the round trips (UCF-101 and GreenEarthNet shrunk with frame_size)
SMALL = {"dmlab": dict(num_train=1, num_eval=2), "minecraft": dict(num_train=1, num_eval=1),
         "ucf101": dict(num_train=3, num_eval=1, frame_size=48), "bair": dict(num_train=2, num_eval=2),
         "greenearthnet": dict(num_train=1, num_eval=2, frame_size=16)}


def loader(name: str):
    """The real-format reader module ``bench.data.<name>`` (skip if that module is absent)."""
    return pytest.importorskip(f"bench.data.{name}", reason=f"the real {name} loader bench.data.{name} is absent")


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    """Every stand-in materialised once at a small size (shared by the tests of this module)."""
    base = tmp_path_factory.mktemp("standins")
    return {name: materialize(name, base / name, **kw) for name, kw in SMALL.items()}


# ----------------------------------------------------------------------------- the maze


@pytest.mark.parametrize("dataset", ["dmlab", "minecraft"])
def test_maze_is_deterministic_per_item(dataset):
    a = maze.generate(dataset, 0, "test", 3)
    b = maze.generate(dataset, 0, "test", 3)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    other = maze.generate(dataset, 0, "test", 4)
    reseeded = maze.generate(dataset, 1, "test", 3)
    assert not np.array_equal(a[0], other[0]) and not np.array_equal(a[0], reseeded[0])


def test_maze_matches_the_long_context_protocols():
    for dataset in ("dmlab", "minecraft"):
        task = TASKS[f"{dataset}_long"]
        video, actions, walk = maze.generate(dataset, 0, "test", 0)
        frames = 300 if dataset == "dmlab" else 301  # TECO's Minecraft files hold the reset frame + 300 steps
        size = 64 if dataset == "dmlab" else 128
        assert video.shape == (frames, size, size, 3) and video.dtype == np.uint8
        assert actions.shape == (frames,) and len(walk.poses) >= frames
        assert frames >= task.num_frames
        if dataset == "dmlab":  # look_left, look_right, forward; int64; the agent looks left first
            assert actions.dtype == np.int64 and set(np.unique(actions)) <= {0, 1, 2}
            assert (actions[:maze.DMLAB_FORCED_LOOK_LEFT] == 0).all()
        else:  # 0 none at frame 0, then forward / left / right; int32
            assert actions.dtype == np.int32 and actions[0] == 0 and set(np.unique(actions[1:])) <= {1, 2, 3}
        assert len(np.unique(actions)) == (3 if dataset == "dmlab" else 4)


@pytest.mark.parametrize("dataset", ["dmlab", "minecraft"])
def test_actions_reproduce_the_walk(dataset):
    """Replaying the stored actions through the maze's dynamics gives the poses of the frames,
    with each dataset's alignment (DMLab: actions[t] after frame t; Minecraft: actions[t] into t)."""
    video, actions, walk = maze.generate(dataset, 0, "train", 5)
    decode = {v: k for k, v in (maze.DMLAB_ACTIONS if dataset == "dmlab" else maze.MINECRAFT_ACTIONS).items()}
    pose = tuple(int(v) for v in walk.poses[0])
    replayed = [pose]
    moves = actions[:-1] if dataset == "dmlab" else actions[1:]
    for a in moves:
        pose = maze.step(walk.maze.wall, pose, decode[int(a)])
        replayed.append(pose)
    assert np.array_equal(np.array(replayed), walk.poses[:len(video)])
    moved = np.abs(np.diff(walk.poses[:, :2], axis=0)).sum(1)
    assert set(np.unique(moved)) <= {0, 1}  # one lattice step per forward move, never through walls
    for x, y, _ in walk.poses:
        assert maze._open_at(walk.maze.wall, int(x), int(y))


@pytest.mark.parametrize("dataset", ["dmlab", "minecraft"])
def test_walks_revisit_places_seen_long_before(dataset):
    frames = maze.NUM_FRAMES[dataset]
    stats = [maze.revisit_stats(maze.trajectory(dataset, 0, "test", i).poses[:frames]) for i in range(12)]
    after = np.array([s["revisit_after"] for s in stats])
    in_context = np.array([s["in_context"] for s in stats])
    gaps = np.array([s["median_gap"] for s in stats])
    assert after.mean() > 0.6 and after.min() > 0.3, after  # most frames after 150 show a known pose
    assert in_context.mean() > 0.5, in_context  # ... already seen in the 144 context frames
    assert np.median(gaps) > 32, gaps  # ... long ago: a short context window does not hold it


def test_first_visit():
    poses = np.array([[0, 0, 0], [0, 0, 1], [0, 0, 0], [4, 0, 0], [0, 0, 1], [0, 0, 0]])
    assert maze.first_visit(poses).tolist() == [-1, -1, 0, -1, 1, 0]


@pytest.mark.parametrize("dataset", ["dmlab", "minecraft"])
def test_identical_poses_give_identical_frames(dataset):
    video, _, walk = maze.generate(dataset, 0, "test", 1)
    poses = walk.poses[:len(video)]
    first = maze.first_visit(poses)
    revisits = np.flatnonzero(first >= 0)
    assert len(revisits) > 50
    assert all(np.array_equal(video[t], video[first[t]]) for t in revisits)
    # a pose rendered alone (another batch, another chunking) gives the same pixels
    t = int(revisits[-1])
    alone = maze.render(walk.maze, walk.style, poses[t:t + 1], video.shape[1])
    assert np.array_equal(alone[0], video[t])
    chunked = maze.render(walk.maze, walk.style, poses[:40], video.shape[1], chunk_pixels=1)
    assert np.array_equal(chunked, video[:40])
    # and different poses look different
    unique, index = np.unique(poses, axis=0, return_index=True)
    distinct = {hashlib.md5(video[i].tobytes()).hexdigest() for i in index}
    assert len(distinct) >= 0.9 * len(unique)


def test_maze_frames_look_like_a_corridor_view():
    """Sky above the horizon, floor below, walls in between; views change as the agent moves."""
    for dataset in ("dmlab", "minecraft"):
        video, _, walk = maze.generate(dataset, 0, "test", 2)
        style = walk.style
        top = video[:, 0].reshape(-1, 3).astype(float) / 255
        sky_like = np.abs(top - np.array(style.sky_top)).max(1) < 0.15
        assert sky_like.mean() > 0.1  # open sky at the top of many columns
        bottom = video[:, -1].reshape(-1, 3).astype(float) / 255
        assert (np.abs(bottom - np.array(style.sky_top)).max(1) > 0.15).mean() > 0.95  # never sky at the bottom
        assert np.abs(np.diff(video.astype(np.int16), axis=0)).mean() > 2  # things move
        assert video.std() > 20


# ----------------------------------------------------------------------------- the other generators


def test_ucf_classes_differ_and_clips_are_deterministic():
    specs = [sucf.class_spec(0, c) for c in range(101)]
    kinds = {(s["background"], s["shape"], s["motion"]) for s in specs}
    assert len(kinds) > 60
    a, b = sucf.clip(0, 7, 15, 1, height=48), sucf.clip(0, 7, 15, 1, height=48)
    assert np.array_equal(a, b) and a.dtype == np.uint8 and a.shape[1:] == (48, 64, 3)
    assert sucf.MIN_FRAMES <= len(a) <= sucf.MAX_FRAMES
    assert not np.array_equal(a[:40], sucf.clip(0, 8, 15, 1, height=48)[:40])
    assert np.abs(np.diff(a.astype(np.int16), axis=0)).mean() > 0.2  # motion
    full = sucf.clip(0, 21, 15, 1)
    assert full.shape[1:] == (240, 320, 3)


def test_bair_trajectory_pushes_objects():
    traj = sbair.trajectory(0, "test", 0)
    assert traj["image_aux1"].shape == traj["image_main"].shape == (30, 64, 64, 3)
    assert traj["action"].shape == (30, 4) and traj["endeffector_pos"].shape == (30, 3)
    assert traj["action"].dtype == traj["endeffector_pos"].dtype == np.float32
    assert np.abs(traj["action"][:, :3]).max() <= 1 and (traj["action"][:, 3] == 1).all()
    assert not np.array_equal(traj["image_aux1"], traj["image_main"])
    moved = 0
    for i in range(8):
        sim = sbair.simulate(sbair._rng(0, "test", i))
        moved += int((np.abs(sim["objects"][-1] - sim["objects"][0]).max(axis=1) > 0.01).any())
    assert moved >= 3  # the gripper pushes something in many trajectories


def test_greenearthnet_cube_semantics():
    rel, ds = sgen.cube(0, "test", 0, size=16)
    assert rel.startswith("ood-t_chopped/") and rel.endswith(".nc")
    s2 = np.isfinite(ds["s2_avail"].values)
    days = np.flatnonzero(s2)
    assert set(days) <= set(range(4, 150, 5)) and len(days) >= 25
    b04, b8a = ds["s2_B04"].values, ds["s2_B8A"].values
    assert np.isnan(b04[~s2]).all() and np.isfinite(b04[s2]).all()
    mask, scl = ds["s2_mask"].values[s2], ds["s2_SCL"].values[s2]
    assert np.array_equal(mask, ds["s2_dlmask"].values[s2])
    assert np.isin(scl[mask == 1], [8, 9, 10]).all() and (scl[mask == 2] == 3).all() and (scl[mask == 4] == 1).all()
    assert 0.01 < (mask > 0).mean() < 0.6
    clear = mask == 0
    ndvi = (b8a[s2] - b04[s2]) / (b8a[s2] + b04[s2])
    veg = np.isin(ds["esawc_lc"].values, [10, 20, 30, 40])[None] & clear
    assert 0.1 < ndvi[veg].mean() < 0.9 and ndvi[veg].std() > 0.05
    assert np.isnan(ds["eobs_fg"].values).all() and np.isfinite(ds["eobs_tg"].values).all()


def test_greenearthnet_weather_drives_greenness():
    """Plant water availability follows recent rain (the covariates matter)."""
    rng = np.random.default_rng(0)
    doy = np.arange(120, 270, dtype=float)
    wets, avails = [], []
    for _ in range(40):
        w = sgen.weather(rng, doy)
        avails.append(sgen.water_stress(w, rng)[-1])
        wets.append(w["rr"][-40:].sum())
    assert np.corrcoef(wets, avails)[0, 1] > 0.3


def test_mp4_writer_is_byte_reproducible(tmp_path):
    frames = maze.generate("minecraft", 0, "test", 0, num_frames=12)[0]
    for codec in ("h264", "mpeg4"):
        a = write_mp4(tmp_path / f"a_{codec}.mp4", frames, 20, codec).read_bytes()
        b = write_mp4(tmp_path / f"b_{codec}.mp4", frames, 20, codec).read_bytes()
        assert a == b, codec
    y, u, v = rgb_to_yuv420p(frames[:2])
    assert y.shape == (2, 128, 128) and u.shape == v.shape == (2, 64, 64) and y.dtype == np.uint8
    grey = rgb_to_yuv420p(np.full((1, 2, 2, 3), 128, np.uint8))
    assert [int(c[0, 0, 0]) for c in grey] == [126, 128, 128]  # BT.601 limited range
    decoded = loader("video_io").read_video(tmp_path / "a_h264.mp4")
    assert decoded.shape == frames.shape and np.abs(decoded.astype(int) - frames).mean() < 3


def test_npz_writer(tmp_path):
    video = np.arange(24, dtype=np.uint8).reshape(2, 2, 2, 3)
    a = save_npz(tmp_path / "a.npz", video=video, actions=np.arange(2)).read_bytes()
    b = save_npz(tmp_path / "b.npz", video=video, actions=np.arange(2)).read_bytes()
    assert a == b
    with np.load(tmp_path / "a.npz") as f:
        assert sorted(f.files) == ["actions", "video"] and np.array_equal(f["video"], video)
    assert zipfile.ZipFile(tmp_path / "a.npz").getinfo("video.npy").compress_type == zipfile.ZIP_DEFLATED


# ----------------------------------------------------------------------------- materialize


def test_materialize_is_deterministic_byte_for_byte(roots, tmp_path):
    for name, kw in SMALL.items():
        again = materialize(name, tmp_path / name, **kw)
        assert tree_digest(again) == tree_digest(roots[name]), name


def test_items_do_not_depend_on_the_count(roots, tmp_path):
    bigger = materialize("dmlab", tmp_path / "dmlab", num_train=1, num_eval=3)
    for rel in ("test/0/0.npz", "test/0/1.npz", "train/0/0.npz"):
        assert (bigger / rel).read_bytes() == (roots["dmlab"] / rel).read_bytes()


def test_materialize_marker_idempotence_and_safety(roots, tmp_path):
    root = roots["dmlab"]
    info = standin_info(root)
    assert is_standin(root) and info["stand_in"] is True and info["params"]["version"] == STANDIN_VERSION
    assert info["params"] == {"dataset": "dmlab", "version": STANDIN_VERSION, "num_train": 1, "num_eval": 2,
                              "seed": 0, "frame_size": None}
    stamp = (root / MARKER).stat().st_mtime_ns
    assert materialize("dmlab", root, **SMALL["dmlab"]) == root
    assert (root / MARKER).stat().st_mtime_ns == stamp  # nothing rewritten
    # other parameters: the stand-in is replaced (in a copy, not to disturb the shared one)
    copy = materialize("dmlab", tmp_path / "d", num_train=1, num_eval=1)
    materialize("dmlab", copy, num_train=0, num_eval=1, seed=3)
    assert standin_info(copy)["params"]["seed"] == 3 and not (copy / "train" / "0" / "0.npz").exists()
    assert json.loads((copy / "dmlab_train.json").read_text()) == []
    # a folder that is not a stand-in is never written into
    user = tmp_path / "real"
    (user / "test").mkdir(parents=True)
    with pytest.raises(FileExistsError):
        materialize("dmlab", user, num_train=1, num_eval=1)
    assert not is_standin(user) and not is_standin(tmp_path / "missing")
    with pytest.raises(ValueError):
        materialize("kinetics", tmp_path / "k", num_train=1, num_eval=1)
    with pytest.raises(ValueError):
        materialize("dmlab", tmp_path / "k", num_train=1, num_eval=1, frame_size=32)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_parallel_materialize_matches_serial(roots, tmp_path):
    parallel = materialize("dmlab", tmp_path / "dmlab", **SMALL["dmlab"], workers=2)
    assert tree_digest(parallel) == tree_digest(roots["dmlab"])


# ----------------------------------------------------------------------------- real formats + real loaders


def test_dmlab_files_and_loader(roots):
    root = roots["dmlab"]
    with np.load(root / "test/0/0.npz") as f:
        assert sorted(f.files) == ["actions", "poses", "video"]  # poses: the stand-in's extra array
        assert f["video"].dtype == np.uint8 and f["video"].shape == (300, 64, 64, 3)
        assert f["actions"].dtype == np.int64 and f["actions"].shape == (300,)
        assert f["poses"].dtype == np.int64 and f["poses"].shape == (300, 3)
        video, actions, poses = f["video"], f["actions"], f["poses"]
    assert json.loads((root / "dmlab_val.json").read_text()) == [{"video_path": "test/0/0.npz"},
                                                                 {"video_path": "test/0/1.npz"}]
    dmlab = loader("dmlab")
    refs = dmlab.list_videos(root, "validation")
    assert [r.id for r in refs] == ["test/0/0", "test/0/1"] and dmlab.count_frames(refs[0]) == 300
    clip = dmlab.read_clip(refs[0], 0, 300)
    assert clip["video"].shape == (300, 3, 64, 64) and clip["actions"].tolist() == actions.tolist()
    assert np.array_equal((clip["video"].permute(0, 2, 3, 1) * 255).round().byte().numpy(), video)
    assert len(dmlab.list_videos(root, "train")) == 1
    # the clip carries the poses of its frames; equal poses are identical frames
    part = dmlab.read_clip(refs[0], 10, 50, 2)
    assert part["poses"].tolist() == poses[10:110:2].tolist()
    first = maze.first_visit(poses)
    revisit = int(np.flatnonzero(first >= 0)[0])
    assert np.array_equal(video[revisit], video[first[revisit]])


def test_minecraft_files_and_loader(roots):
    root = roots["minecraft"]
    video_io = loader("video_io")
    info = video_io.video_info(root / "test/0/000000.mp4")
    assert (info.num_frames, info.width, info.height, info.codec, info.fps) == (301, 128, 128, "mpeg4", 20.0)
    with np.load(root / "test/0/000000.npz") as f:
        assert sorted(f.files) == ["actions", "poses"] and f["actions"].dtype == np.int32
        assert f["actions"].shape == (301,) and f["poses"].shape == (301, 3)
        poses = f["poses"]
    minecraft = loader("minecraft")
    refs = minecraft.list_videos(root, "validation")
    clip = minecraft.read_clip(refs[0], 0, 300)
    assert clip["video"].shape == (300, 3, 128, 128) and clip["actions"][0] == 0
    assert 1 <= clip["actions"][1:].min() and clip["actions"].max() <= 3
    assert clip["poses"].tolist() == poses[:300].tolist()
    truth = maze.generate("minecraft", 0, "test", 0)[0][:300]
    decoded = (clip["video"].permute(0, 2, 3, 1) * 255).round().numpy()
    psnr = 10 * np.log10(255 ** 2 / ((decoded - truth) ** 2).mean())
    assert psnr > 28  # MPEG-4 Part 2 is lossy, as the real files are


def test_ucf101_files_and_loader(roots, tmp_path):
    root = roots["ucf101"]
    ucf = loader("ucf101")
    train, test, trainval = (ucf.list_videos(root, s) for s in ("train03", "test03", "trainval"))
    assert (len(train), len(test), len(trainval)) == (3, 10, 13)  # 10 test clips per evaluated clip
    assert [r.label for r in test] == list(range(10))  # one clip per class, in classInd order
    assert all("g15" <= r.id.split("_")[-2] <= "g21" for r in test)  # split 3's test groups
    clip = ucf.read_clip(test[0], 0, 16, 1, 32)
    assert clip["video"].shape == (16, 3, 32, 32) and clip["label"] == 0
    info = loader("video_io").video_info(test[0].path)
    assert (info.codec, info.fps, info.height, info.width) == ("h264", 25.0, 48, 64)
    lists = root / "ucfTrainTestlist"
    class_ind = (lists / "classInd.txt").read_bytes()
    assert class_ind.count(b"\r\n") == 101 and b"37 HandStandPushups\r\n" in class_ind
    assert not (lists / "testlist03.txt").read_bytes().endswith(b"\n")
    assert (lists / "trainlist03.txt").read_bytes().startswith(b"ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 1\r\n")
    # the official text lists alone (no JSON) give the same clips
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "UCF-101").symlink_to(root / "UCF-101")
    (bare / "ucfTrainTestlist").symlink_to(lists)
    from_text = ucf.list_videos(bare, "test03")
    assert [(r.id, r.label, r.path.resolve()) for r in from_text] == [(r.id, r.label, r.path.resolve()) for r in test]
    if FIX.is_dir():
        real = (FIX / "ucf101/ucfTrainTestlist/classInd.txt").read_bytes()
        assert class_ind == real


def test_ucf_test_list_holds_ten_clips_per_evaluated_clip():
    assert sucf.test_list_size(16) == 160 and sucf.test_list_size(2048) == 3696
    clips = sucf._split_clips(250, sucf.TEST_GROUPS)
    assert len(clips) == 250 and len(set(clips)) == 250
    per_class = np.bincount([c[0] for c in clips], minlength=101)
    assert per_class.max() - per_class.min() <= 1


def test_bair_files_and_loader(roots):
    root = roots["bair"]
    tfrecord, bair = loader("tfrecord"), loader("bair")
    payloads = list(tfrecord.iter_records(root / "softmotion30_44k/test/traj_0_to_1.tfrecords"))
    assert len(payloads) == 2
    example = tfrecord.parse_example(payloads[0])
    assert len(example) == 30 * 4
    assert len(example["0/image_aux1/encoded"][0]) == 64 * 64 * 3
    assert example["29/action"].shape == (4,) and example["29/endeffector_pos"].shape == (3,)
    truth = sbair.trajectory(0, "test", 0)
    assert np.frombuffer(example["7/image_main/encoded"][0], np.uint8).tobytes() == truth["image_main"][7].tobytes()
    refs = bair.list_videos(root, "test")
    far_refs = bair.list_videos(root, "test", layout="far")
    assert [r.id for r in refs] == [r.id for r in far_refs] == ["traj_0_to_1/0", "traj_0_to_1/1"]
    exact, lossy = bair.read_clip(refs[0]), bair.read_clip(far_refs[0])
    assert exact["video"].shape == lossy["video"].shape == (30, 3, 64, 64)
    assert np.array_equal((exact["video"].permute(0, 2, 3, 1) * 255).round().byte().numpy(), truth["image_aux1"])
    assert (exact["video"] - lossy["video"]).abs().mean() < 4 / 255
    assert np.allclose(exact["action_vectors"].numpy(), lossy["action_vectors"].numpy())
    assert np.allclose(exact["endeffector_pos"].numpy(), truth["endeffector_pos"])
    assert len(bair.list_videos(root, "train")) == 2


def test_greenearthnet_files_and_loader(roots):
    root = roots["greenearthnet"]
    gen = loader("greenearthnet")
    test = gen.list_videos(root, "ood-t_chopped")
    train = gen.list_videos(root, "train")
    assert len(test) == 2 and len(train) == 1
    assert all(r.path.parent.parent.name == "ood-t_chopped" and r.path.name.count("_") == 10 for r in test)
    clip = gen.read_clip(test[0], gen.FIRST_S2_DAY, 30, gen.S2_STEP)
    assert clip["video"].shape == (30, 3, 16, 16) and clip["covariates"].shape == (30, 24)
    assert clip["mask"].any() and not clip["mask"].all()
    with xr.open_dataset(test[0].path) as cube:
        assert dict(cube.sizes) == {"time": 150, "lat": 16, "lon": 16}
        assert all(v.dtype == np.float32 for v in cube.data_vars.values())
        assert cube["lat"].values[0] > cube["lat"].values[-1] and cube["lon"].values[0] < cube["lon"].values[-1]
        if GEN_FIXTURE.is_file():
            with xr.open_dataset(GEN_FIXTURE) as real:
                assert sorted(cube.data_vars) == sorted(real.data_vars)
                assert sorted(cube.coords) == sorted(real.coords)
                for name, var in real.variables.items():
                    assert cube[name].dims == var.dims and cube[name].dtype == var.dtype, name
                    assert cube[name].attrs == var.attrs, name
                    assert cube[name].encoding.get("zlib") == var.encoding.get("zlib"), name
                assert set(cube.attrs) == set(real.attrs)
