"""Dataset readers on the real-format fixtures (../shared/fixtures/datasets), video and TFRecord
round trips, malformed input, evaluation selections and data-root resolution."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from bench.data import (DATASETS, ClipDataset, TrainClipDataset, bair, dmlab, eval_refs, greenearthnet,
                        minecraft, resolve_root, tfrecord, train_refs, ucf101, ucf_balanced)
from bench.data.video_io import read_video, resize_crop, to_float_video, video_info, write_video
from bench.tasks import TASKS

SHARED = Path(os.environ.get("FAR_SHARED_DIR", Path(__file__).parents[1].parent / "shared"))
FIX = SHARED / "fixtures" / "datasets"
UCF_CLIP = "ucf101/UCF-101/CliffDiving/v_CliffDiving_g08_c03.mp4"
GEN_CUBE = "MJJ21/32ULB_2021-05-01_2021-09-27_1977_2105_1721_1849_30_110_26_106"
GEN_TRAIN = "29SND/29SND_2018-05-02_2018-09-28_2105_2233_2873_3001_32_112_44_124"

needs_fixtures = pytest.mark.skipif(not FIX.is_dir(), reason=f"dataset fixtures not found at {FIX} "
                                    "(set FAR_SHARED_DIR to the shared folder)")

# Every fixture file and the test that loads it (test_every_fixture_file_is_covered keeps this honest).
COVERED = {
    "README.md": "test_fixture_readme_table",
    UCF_CLIP: "test_ucf101_json_lists_and_clip",
    "ucf101/train03.json": "test_ucf101_json_lists_and_clip",
    "ucf101/trainval.json": "test_ucf101_json_lists_and_clip",
    "ucf101/test02.json": "test_ucf101_json_lists_and_clip",
    "ucf101/ucfTrainTestlist/classInd.txt": "test_ucf101_official_lists",
    "ucf101/ucfTrainTestlist/trainlist01.txt": "test_ucf101_official_lists",
    "ucf101/ucfTrainTestlist/trainlist02.txt": "test_ucf101_official_lists",
    "ucf101/ucfTrainTestlist/trainlist03.txt": "test_ucf101_official_lists",
    "ucf101/ucfTrainTestlist/testlist02.txt": "test_ucf101_official_lists",
    "ucf101/ucfTrainTestlist/testlist03.txt": "test_ucf101_prediction_selections",
    "bair/softmotion30_44k/test/traj_0_to_1.tfrecords": "test_bair_tfrecord_fixture",
    "bair/bair_val.json": "test_bair_far_layout_matches_tfrecords",
    **{f"bair/processed/test/traj_0_to_1/{k}/{f}": "test_bair_far_layout_matches_tfrecords"
       for k in (0, 1) for f in ("video.mp4", "actions.npy", "endeffector_pos.npy")},
    "dmlab/dmlab_val.json": "test_dmlab_layouts_and_trajectory",
    "dmlab/test/0/5.npz": "test_dmlab_layouts_and_trajectory",
    "minecraft/minecraft_val.json": "test_minecraft_layouts_and_trajectories",
    **{f"minecraft/test/0/00000{i}.{s}": "test_minecraft_layouts_and_trajectories"
       for i in (0, 1) for s in ("mp4", "npz")},
    f"greenearthnet/ood-t_chopped/{GEN_CUBE}.nc": "test_greenearthnet_cube_matches_official_rules",
    f"greenearthnet/preds/ood-t_chopped/{GEN_CUBE}.nc": "test_greenearthnet_prediction_file",
    f"greenearthnet/train/{GEN_TRAIN}.nc": "test_greenearthnet_train_cube_and_windows",
}


def copy_writable(src: Path, dst: Path) -> None:
    """Copy a fixture tree into a writable tree (the fixtures are read-only; copytree keeps that)."""
    for f in src.rglob("*"):
        if f.is_file():
            (dst / f.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dst / f.relative_to(src))


def check_video(video: torch.Tensor, frames: int, size: int) -> None:
    assert video.dtype == torch.float32 and video.shape == (frames, 3, size, size)
    assert 0.0 <= float(video.min()) and float(video.max()) <= 1.0


# ----------------------------------------------------------------------------- inventory


@needs_fixtures
def test_every_fixture_file_is_covered():
    on_disk = {str(p.relative_to(FIX)) for p in FIX.rglob("*") if p.is_file()}
    assert on_disk == set(COVERED), \
        f"not covered by a test: {sorted(on_disk - set(COVERED))}; no longer there: {sorted(set(COVERED) - on_disk)}"


@needs_fixtures
def test_fixture_readme_table():
    readme = (FIX / "README.md").read_text()
    rows = re.findall(r"^\| `(\w+)/` \| (.+?) \|", readme, flags=re.M)
    assert {folder for folder, _ in rows} == set(DATASETS)
    assert all((FIX / folder).is_dir() for folder, _ in rows)
    assert {f for f, kind in rows if kind.startswith("**real**")} == {"dmlab", "ucf101"}


# ----------------------------------------------------------------------------- video files


@pytest.mark.parametrize("codec,size,tol", [("lossless", (33, 47), 0), ("h264", (32, 48), 6), ("mpeg4", (32, 48), 8)])
def test_write_read_video_round_trip(tmp_path, codec, size, tol):
    y, x = np.mgrid[:size[0], :size[1]]
    frames = np.stack([np.stack([(x * 5 + t * 3) % 256, (y * 7) % 256, np.full_like(x, 40 * t)], -1)
                       for t in range(6)]).astype(np.uint8)
    path = write_video(tmp_path / "sub" / "clip.mp4", frames, fps=20, codec=codec)
    assert [p.name for p in path.parent.iterdir()] == ["clip.mp4"]  # no temporary file left
    back = read_video(path)
    assert back.shape == frames.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - frames).mean() <= tol
    info = video_info(path)
    assert (info.num_frames, info.fps, info.width, info.height) == (6, 20.0, size[1], size[0])
    assert np.array_equal(read_video(path, [4, 1, 9]), back[[4, 1]])  # index past the end left out
    assert read_video(path, []).shape == (0, size[0], size[1], 3)


def test_video_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.mp4"):
        read_video(tmp_path / "nothere.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 10)
    with pytest.raises(ValueError, match="junk.mp4"):
        video_info(junk)
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "a.mp4", np.zeros((2, 8, 8, 3), np.float32), fps=10)
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "a.mp4", np.zeros((2, 9, 8, 3), np.uint8), fps=10, codec="h264")


# ----------------------------------------------------------------------------- TFRecord


def test_crc32c_and_tfrecord_round_trip(tmp_path):
    assert tfrecord.crc32c(b"123456789") == 0xE3069283
    big = np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes()
    reg = 0xFFFFFFFF  # bytewise reference for the lane-parallel path
    for b in big:
        reg = int(tfrecord._TABLE[(reg ^ b) & 0xFF]) ^ (reg >> 8)
    assert tfrecord.crc32c(big) == reg ^ 0xFFFFFFFF
    examples = [{"img": big[:100], "frames": [b"a", b"bc"], "f": np.array([0.5, -1.25, 3e9], np.float32),
                 "i": np.array([0, -1, 2 ** 62, -(2 ** 63)], np.int64)},
                {"empty_f": np.zeros(0, np.float32), "one": [7]}]
    path = tfrecord.write_tfrecord(tmp_path / "x.tfrecords", (tfrecord.serialize_example(e) for e in examples))
    parsed = [tfrecord.parse_example(p) for p in tfrecord.iter_records(path)]
    assert parsed[0]["img"] == [big[:100]] and parsed[0]["frames"] == [b"a", b"bc"]
    assert parsed[0]["f"].dtype == np.float32 and np.array_equal(parsed[0]["f"], examples[0]["f"])
    assert parsed[0]["i"].dtype == np.int64 and np.array_equal(parsed[0]["i"], examples[0]["i"])
    assert parsed[1]["empty_f"].shape == (0,) and parsed[1]["one"].tolist() == [7]
    assert len(tfrecord.record_offsets(path)) == 2


@needs_fixtures
def test_bair_tfrecord_fixture(tmp_path):
    path = FIX / "bair/softmotion30_44k/test/traj_0_to_1.tfrecords"
    offsets = tfrecord.record_offsets(path)
    assert len(offsets) == 2
    for offset in offsets:
        payload = tfrecord.read_record(path, offset, verify=True)  # data CRC checked
        example = tfrecord.parse_example(payload)
        keys = {f"{t}/{k}" for t in range(30) for k in ("image_aux1/encoded", "image_main/encoded", "action",
                                                      "endeffector_pos")}
        assert set(example) == keys
        assert all(len(example[f"{t}/image_aux1/encoded"][0]) == 64 * 64 * 3 for t in range(30))
        assert example["0/action"].shape == (4,) and example["0/endeffector_pos"].shape == (3,)
        assert tfrecord.serialize_example(example) == payload  # the writer reproduces the bytes
    refs = bair.list_videos(FIX / "bair", "test")
    assert [r.id for r in refs] == ["traj_0_to_1/0", "traj_0_to_1/1"] and bair.count_frames(refs[0]) == 30
    clip = bair.read_clip(refs[1])
    check_video(clip["video"], 30, 64)
    assert clip["actions"] is None and clip["label"] is None
    assert clip["action_vectors"].shape == (30, 4) and clip["endeffector_pos"].shape == (30, 3)
    main = bair.read_trajectory(refs[1], camera="image_main")["video"]
    assert main.shape == (30, 64, 64, 3) and not np.array_equal(main, bair.read_trajectory(refs[1])["video"])
    # corruption is caught: payload byte, length field, truncation
    data = bytearray(path.read_bytes())
    bad = tmp_path / "bad.tfrecords"
    data[offsets[1] + 12 + 500] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(tfrecord.TFRecordError, match="data CRC mismatch.*bad.tfrecords|bad.tfrecords.*data CRC"):
        tfrecord.read_record(bad, offsets[1])
    data[0] ^= 0x01
    bad.write_bytes(bytes(data))
    with pytest.raises(tfrecord.TFRecordError, match="length CRC"):
        tfrecord.record_offsets(bad)
    bad.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(tfrecord.TFRecordError, match="truncated"):
        tfrecord.record_offsets(bad)


@needs_fixtures
def test_bair_far_layout_matches_tfrecords(tmp_path):
    far = bair.list_videos(FIX / "bair", "test", layout="far")
    raw = bair.list_videos(FIX / "bair", "test", layout="tfrecord")
    assert [r.id for r in far] == [r.id for r in raw]
    for f, r in zip(far, raw):
        assert video_info(f.path).codec == "h264" and video_info(f.path).fps == 10
        clip, traj = bair.read_clip(f), bair.read_trajectory(r)
        check_video(clip["video"], 30, 64)
        decoded = (clip["video"] * 255).round().permute(0, 2, 3, 1).numpy()
        assert np.abs(decoded - traj["video"]).mean() < 3.0  # lossy H.264: about 2 grey levels
        assert np.array_equal(clip["action_vectors"].numpy(), traj["action_vectors"])
        assert np.array_equal(clip["endeffector_pos"].numpy(), traj["endeffector_pos"])
        assert np.array_equal(np.load(f.action_path), traj["action_vectors"])
    # converting the TFRecords to the FAR layout losslessly reproduces the frames exactly
    list_path = bair.convert_to_far_layout(FIX / "bair", "test", tmp_path, codec="lossless")
    assert list_path.name == "bair_val.json"
    converted = bair.list_videos(tmp_path, "test")
    assert [r.id for r in converted] == [r.id for r in raw]
    assert torch.equal(bair.read_clip(converted[0])["video"], bair.read_clip(raw[0])["video"])
    # short trajectories are zero padded (FAR), and the protocol selection keeps list order
    padded = bair.read_clip(raw[0], start=20, num_frames=16)
    assert padded["video"].shape[0] == 16 and float(padded["video"][10:].abs().max()) == 0.0
    assert [r.id for r, s in eval_refs(TASKS["bair_pred"], FIX / "bair")] == [r.id for r in raw]


# ----------------------------------------------------------------------------- UCF-101


@pytest.fixture(scope="module")
def ucf_text_root(tmp_path_factory):
    """The official split files and clip tree without FAR's JSON lists."""
    root = tmp_path_factory.mktemp("ucf")
    for name in ("ucfTrainTestlist", "UCF-101"):
        (root / name).symlink_to(FIX / "ucf101" / name)
    return root


@needs_fixtures
def test_ucf101_json_lists_and_clip():
    for split in ("train03", "trainval", "test02"):
        (ref,) = ucf101.list_videos(FIX / "ucf101", split)
        assert ref.id == "v_CliffDiving_g08_c03" and ref.label == 21 and ref.path == FIX / UCF_CLIP
    info = video_info(FIX / UCF_CLIP)
    assert (info.num_frames, info.fps, info.width, info.height, info.codec) == (78, 25.0, 320, 240, "h264")
    assert ucf101.count_frames(ref) == 78
    pred = ucf101.read_clip(ref, 0, 16, 1, 64)  # MCVD protocol
    check_video(pred["video"], 16, 64)
    assert pred["label"] == 21 and pred["actions"] is None
    gen = ucf101.read_clip(ref, 0, 16, 3, 128)  # Latte protocol: stride 3
    check_video(gen["video"], 16, 128)
    full = to_float_video(read_video(FIX / UCF_CLIP, [0, 3, 45]))
    assert torch.allclose(gen["video"][[0, 1, 15]], resize_crop(full, 128))
    tvf = pytest.importorskip("torchvision.transforms.v2.functional")
    expected = tvf.center_crop(tvf.resize(full, [64], antialias=True), [64, 64])
    assert torch.allclose(resize_crop(full, 64), expected, atol=1e-6)
    tail = ucf101.read_clip(ref, 60, 16, 3, 64)  # frames past the end are zeros (FAR)
    assert float(tail["video"][6:].abs().max()) == 0.0 and float(tail["video"][:6].max()) > 0


@needs_fixtures
def test_ucf101_official_lists(ucf_text_root):
    classes = ucf101.read_class_index(FIX / "ucf101/ucfTrainTestlist/classInd.txt")
    assert len(classes) == 101 and classes["cliffdiving"] == 21 and classes["handstandpushups"] == 36
    sizes = {"train01": 9537, "train02": 9586, "train03": 9624, "test02": 3734}
    lists = {split: ucf101.list_videos(ucf_text_root, split) for split in sizes}
    for split, refs in lists.items():
        assert len(refs) == sizes[split] and {r.label for r in refs} == set(range(101))
    clip = "v_CliffDiving_g08_c03"
    assert [clip in {r.id for r in refs} for refs in lists.values()] == [True, False, True, True]
    (ref,) = [r for r in lists["test02"] if r.id == clip]
    assert ref.label == 21 and ref.path == ucf_text_root / UCF_CLIP.removeprefix("ucf101/")  # .avi listed, .mp4 found
    check_video(ucf101.read_clip(ref, 0, 4, 1, 64)["video"], 4, 64)
    missing = [r for r in lists["test02"] if r.id != clip][0]
    with pytest.raises(FileNotFoundError, match=missing.id):
        ucf101.read_clip(missing, 0, 4)
    trainval = ucf101.list_videos(ucf_text_root, "trainval")  # split 2 train + test: every clip once
    assert len(trainval) == len({r.id for r in trainval}) == 13320


def test_ucf101_malformed_lists(tmp_path):
    (tmp_path / "test03.json").write_text(json.dumps([{"video_path": "a.mp4", "label": 101}]))
    with pytest.raises(ValueError, match=r"test03\.json.*entry 0.*'label'"):
        ucf101.list_videos(tmp_path, "test03")
    (tmp_path / "test03.json").write_text(json.dumps([{"label": 3}]))
    with pytest.raises(ValueError, match=r"test03\.json.*'video_path'"):
        ucf101.list_videos(tmp_path, "test03")
    lists = tmp_path / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\r\n2 Archery\r\n")
    (lists / "trainlist01.txt").write_text("Archery/v_Archery_g01_c01.avi 1\r\n")
    with pytest.raises(ValueError, match=r"trainlist01\.txt: line 1.*disagrees"):
        ucf101.list_videos(tmp_path, "train01")
    (lists / "trainlist01.txt").write_text("Archery/v_Archery_g01_c01.avi 2\r\n")
    (ref,) = ucf101.list_videos(tmp_path, "train01")
    assert ref.label == 1 and ref.path == tmp_path / "UCF-101/Archery/v_Archery_g01_c01.avi"
    with pytest.raises(ValueError, match="unknown split"):
        ucf101.list_videos(tmp_path, "test9")


@needs_fixtures
def test_ucf101_prediction_selections(ucf_text_root):
    test03 = ucf101.list_videos(ucf_text_root, "test03")
    assert len(test03) == 3696
    far = eval_refs(TASKS["ucf101_pred"], ucf_text_root)
    assert [r for r, _ in far] == test03[::10][:256] and {s for _, s in far} == {0}
    assert far[-1][0].id.startswith("v_PommelHorse") and len({r.label for r, _ in far}) == 69
    mcvd = [r for r, _ in eval_refs(TASKS["ucf101_pred_mcvd"], ucf_text_root)]
    assert mcvd == [test03[round(i / 255 * 368) * 10] for i in range(256)]
    assert len({r.label for r in mcvd}) == 101 and len({r.id for r, _ in far} & {r.id for r in mcvd}) == 178
    quick = TASKS["ucf101_pred"].at_scale("quick")
    assert [r for r, _ in eval_refs(quick, ucf_text_root)] == test03[::10][:quick.num_videos]


@needs_fixtures
def test_ucf101_generation_real_set(ucf_text_root):
    task = TASKS["ucf101_cond128"]
    chosen = [r for r, _ in eval_refs(task, ucf_text_root)]  # no seed: the task's first seed
    assert len(chosen) == 2048 == len({r.id for r in chosen})
    counts = np.bincount([r.label for r in chosen], minlength=101)
    assert counts.max() == 21 and counts.min() >= 1 and (counts == 21).sum() >= 101 - (21 * 101 - 2048)
    again = [r for r, _ in eval_refs(task, ucf_text_root, seed=task.seeds[0])]
    trainval = ucf101.list_videos(ucf_text_root, "trainval")
    assert again == chosen == ucf_balanced(trainval, 2048, 0) and ucf_balanced(trainval, 2048, 1) != chosen
    # quick scale: FAR's draw with num_sample = 16 (1 clip per class, shuffled, first 16)
    quick = [r for r, _ in eval_refs(task.at_scale("quick"), ucf_text_root)]
    assert quick == ucf_balanced(trainval, 16, 0) and len({r.label for r in quick}) == 16


# ----------------------------------------------------------------------------- DMLab


@needs_fixtures
def test_dmlab_layouts_and_trajectory():
    (far,) = dmlab.list_videos(FIX / "dmlab", "validation")
    (teco,) = dmlab.list_videos(FIX / "dmlab", "test")  # JSON present -> same list
    assert far == teco and far.id == "test/0/5" and dmlab.count_frames(far) == 300
    clip = dmlab.read_clip(far, 0, 300, 1, 64)
    check_video(clip["video"], 300, 64)
    actions = clip["actions"]
    assert actions.dtype == torch.int64 and actions.shape == (300,)
    assert np.bincount(actions.numpy()).tolist() == [105, 79, 116]  # 0 look left, 1 look right, 2 forward
    assert actions[:26].eq(0).all()  # forced look_left at the start
    raw = np.load(FIX / "dmlab/test/0/5.npz")
    assert np.array_equal((clip["video"] * 255).round().byte().permute(0, 2, 3, 1).numpy(), raw["video"])
    part = dmlab.read_clip(far, 144, 12, 2, 32)
    check_video(part["video"], 12, 32)
    assert torch.equal(part["actions"], actions[144:168:2])
    assert "poses" not in clip  # real files carry no poses (the stand-in's do)
    with pytest.raises(ValueError, match="5.npz.*300 frames"):
        dmlab.read_clip(far, 10, 300)


@needs_fixtures
def test_dmlab_teco_folder_and_malformed_files(tmp_path):
    copy_writable(FIX / "dmlab/test", tmp_path / "test")
    (tmp_path / "test/10").mkdir()
    video = np.zeros((5, 8, 8, 3), np.uint8)
    np.savez(tmp_path / "test/10/2.npz", video=video, actions=np.zeros(5, np.int64))
    np.savez(tmp_path / "test/0/12.npz", video=video)  # no actions
    np.savez(tmp_path / "test/10/3.npz", video=video, actions=np.zeros(4, np.int64))
    refs = dmlab.list_videos(tmp_path, "validation")
    assert [r.id for r in refs] == ["test/0/5", "test/0/12", "test/10/2", "test/10/3"]  # numeric order
    assert dmlab.read_clip(refs[2])["video"].shape == (5, 3, 8, 8)
    with pytest.raises(ValueError, match=r"12\.npz.*'actions'"):
        dmlab.read_clip(refs[1])
    with pytest.raises(ValueError, match=r"3\.npz.*4 entries.*5 frames"):
        dmlab.read_clip(refs[3])
    np.savez(tmp_path / "test/10/2.npz", video=video, actions=np.zeros(5, np.int64), poses=np.zeros((4, 3), np.int64))
    with pytest.raises(ValueError, match=r"2\.npz.*'poses' has 4 entries.*5 frames"):
        dmlab.read_clip(refs[2])
    (tmp_path / "dmlab_val.json").write_text(json.dumps([{"latent_path": "x.pt"}]))
    with pytest.raises(ValueError, match=r"dmlab_val\.json.*entry 0.*'video_path'"):
        dmlab.list_videos(tmp_path, "validation")
    (tmp_path / "dmlab_val.json").write_text(json.dumps({"video_path": "x"}))
    with pytest.raises(ValueError, match="JSON array"):
        dmlab.list_videos(tmp_path, "validation")


# ----------------------------------------------------------------------------- Minecraft


@needs_fixtures
def test_minecraft_layouts_and_trajectories(tmp_path):
    refs = minecraft.list_videos(FIX / "minecraft", "validation")
    assert [r.id for r in refs] == ["test/0/000000", "test/0/000001"]
    copy_writable(FIX / "minecraft/test", tmp_path / "test")
    assert [(r.id, r.action_path.name) for r in minecraft.list_videos(tmp_path, "test")] == \
        [(r.id, r.action_path.name) for r in refs]  # TECO folder, sibling npz
    for ref, frames in zip(refs, (301, 41)):
        info = video_info(ref.path)
        assert (info.num_frames, info.fps, info.width, info.codec) == (frames, 20.0, 128, "mpeg4")
        raw = np.load(ref.action_path)["actions"]
        assert raw.dtype == np.int32 and raw.shape == (frames,) and raw[0] == 0 and set(raw[1:]) <= {1, 2, 3}
        runs = [(a, len(list(g))) for a, g in itertools.groupby(raw[1:])]
        assert all(n % 5 == 0 for _, n in runs[:-1]) and all(n <= 50 for a, n in runs if a == 1)
    clip = minecraft.read_clip(refs[0], 0, 300, 1, 128)
    check_video(clip["video"], 300, 128)
    assert clip["actions"].dtype == torch.int64
    assert clip["actions"].tolist() == np.load(refs[0].action_path)["actions"][:300].tolist()
    assert "poses" not in clip  # real files carry no poses (the stand-in's do)
    assert float((clip["video"][1:] - clip["video"][:-1]).abs().mean()) > 0  # the scene moves
    check_video(minecraft.read_clip(refs[1], 0, 41, 1, 64)["video"], 41, 64)
    with pytest.raises(ValueError, match="000001.mp4.*41 frames"):
        minecraft.read_clip(refs[1], 0, 300)
    np.savez_compressed(tmp_path / "test/0/000001.npz", actions=np.zeros(40, np.int32))
    with pytest.raises(ValueError, match="000001.npz.*40 entries.*41 frames"):
        minecraft.read_clip(minecraft.list_videos(tmp_path, "test")[1], 0, 8)
    (tmp_path / "test/0/000001.npz").unlink()  # no action file: zeros, as TECO
    assert minecraft.read_clip(minecraft.list_videos(tmp_path, "test")[1], 0, 8)["actions"].eq(0).all()
    (tmp_path / "minecraft_val.json").write_text(json.dumps([{"video_path": "test/0/000000.mp4"}]))
    with pytest.raises(ValueError, match=r"minecraft_val\.json.*'action_path'"):
        minecraft.list_videos(tmp_path, "validation")


@needs_fixtures
def test_long_video_datasets_for_tasks():
    for name in ("dmlab_long", "minecraft_long"):
        task = TASKS[name]
        root = FIX / task.dataset
        pairs = eval_refs(task, root)
        assert [r for r, _ in pairs] == DATASETS[task.dataset].list_videos(root, "validation")
        quick = task.at_scale("quick")
        item = ClipDataset(quick, pairs[:1], root)[0]
        check_video(item["video"], quick.num_frames, quick.resolution)
        assert item["actions"].shape == (quick.num_frames,)


# ----------------------------------------------------------------------------- GreenEarthNet


@needs_fixtures
def test_greenearthnet_cube_matches_official_rules():
    (ref,) = greenearthnet.list_videos(FIX / "greenearthnet", "ood-t_chopped")
    assert ref.id == GEN_CUBE and greenearthnet.count_frames(ref) == 150
    clip = greenearthnet.read_clip(ref)
    assert clip["days"].tolist() == list(range(4, 150, 5))
    cube = xr.open_dataset(ref.path)
    s2 = cube.isel(time=slice(4, None, 5))
    bands = np.stack([s2[b].values for b in greenearthnet.BANDS], 1)
    assert clip["bands"].shape == (30, 4, 16, 16) and clip["bands"].dtype == torch.float32
    assert np.array_equal(clip["bands"].numpy(), np.nan_to_num(bands))
    assert torch.equal(clip["video"], clip["bands"][:, [3, 2, 1]].clamp(0, 1))
    check_video(clip["video"], 30, 16)
    ndvi = ((s2.s2_B8A - s2.s2_B04) / (s2.s2_B8A + s2.s2_B04 + 1e-8)).clip(-1, 1)
    clear = (s2.s2_dlmask < 1) & s2.s2_SCL.isin([1, 2, 4, 5, 6, 7])
    assert clip["mask"].dtype == torch.bool and clip["mask"].shape == (30, 1, 16, 16)
    assert np.array_equal(clip["mask"][:, 0].numpy(), clear.values)
    assert np.allclose(clip["ndvi"][:, 0].numpy(), np.nan_to_num(ndvi.values), atol=1e-6)
    assert not clip["mask"][17].any() and float(clip["bands"][17].abs().max()) == 0.0  # missing acquisition
    assert 0.2 < float(clip["mask"].float().mean()) < 1.0  # clouds, shadows and defective pixels masked
    assert np.isnan(cube.s2_avail.values[89]) and cube.s2_avail.values[84] == 1
    # covariates: the official loader's normalise -> coarsen(time=5) -> mean/min/max, NaN -> 0
    names = [f"eobs_{v}" for v in greenearthnet.EOBS]
    mean = xr.DataArray([greenearthnet.EOBS_MEAN_STD[v][0] for v in greenearthnet.EOBS], dims="variable")
    std = xr.DataArray([greenearthnet.EOBS_MEAN_STD[v][1] for v in greenearthnet.EOBS], dims="variable")
    eobs = ((cube[names].to_array("variable") - mean) / std).transpose("time", "variable").coarsen(time=5)
    expected = np.nan_to_num(np.concatenate([eobs.mean().values, eobs.min().values, eobs.max().values], 1))
    assert clip["covariates"].shape == (30, 24) and np.allclose(clip["covariates"].numpy(), expected, atol=1e-5)
    assert clip["covariates"][:, [0, 8, 16]].eq(0).all()  # eobs_fg is all NaN
    assert clip["static"].shape == (5, 16, 16)
    assert np.allclose(clip["static"][0].numpy(), cube.nasa_dem.values / 500)
    assert set(clip["landcover"].unique().tolist()) == {10, 20, 30, 40, 50, 80}
    every10 = greenearthnet.read_clip(ref, 4, 15, 10)  # the first window is clipped at day 0
    assert every10["days"].tolist() == list(range(4, 150, 10)) and every10["covariates"].shape == (15, 24)
    assert torch.equal(every10["covariates"][0], clip["covariates"][0])
    small = greenearthnet.read_clip(ref, 4, 10, 5, 8)
    assert small["video"].shape == (10, 3, 8, 8) and small["mask"].shape == (10, 1, 8, 8)
    assert small["mask"].dtype == torch.bool and small["landcover"].shape == (8, 8)
    with pytest.raises(ValueError, match="Sentinel-2 days"):
        greenearthnet.read_clip(ref, start=0)
    with pytest.raises(ValueError, match="150 days"):
        greenearthnet.read_clip(ref, 4, 31, 5)
    for task in (TASKS["greenearthnet"], TASKS["greenearthnet"].at_scale("quick")):
        assert eval_refs(task, FIX / "greenearthnet") == [(ref, 4)]
        item = ClipDataset(task, eval_refs(task, FIX / "greenearthnet"))[0]
        assert item["video"].shape == (30, 3, task.resolution, task.resolution)


@needs_fixtures
def test_greenearthnet_prediction_file(tmp_path):
    (ref,) = greenearthnet.list_videos(FIX / "greenearthnet", "ood-t_chopped")
    pred_dir = FIX / "greenearthnet/preds/ood-t_chopped"
    path = greenearthnet.prediction_path(pred_dir, ref)
    assert path == pred_dir / f"{GEN_CUBE}.nc"
    pred = greenearthnet.read_prediction(path, ref)
    assert pred.shape == (20, 16, 16) and pred.dtype == torch.float32
    clip = greenearthnet.read_clip(ref)  # the fixture predicts the mean clear-sky context NDVI
    context = torch.where(clip["mask"][:10, 0], clip["ndvi"][:10, 0], torch.nan)
    assert torch.allclose(pred, context.nanmean(0).expand(20, -1, -1), atol=1e-6)
    out = greenearthnet.write_prediction(tmp_path / "MJJ21" / path.name, pred * 0.5, ref)
    assert torch.equal(greenearthnet.read_prediction(out, ref), pred * 0.5)
    shifted = xr.open_dataset(path).load()
    shifted["time"] = shifted.time + np.timedelta64(1, "D")
    shifted.to_netcdf(tmp_path / "shifted.nc")
    with pytest.raises(ValueError, match="shifted.nc.*target"):
        greenearthnet.read_prediction(tmp_path / "shifted.nc", ref)
    with pytest.raises(ValueError, match=r"must be \(20, 16, 16\)"):
        greenearthnet.write_prediction(tmp_path / "x.nc", pred[:10], ref)


@needs_fixtures
def test_greenearthnet_train_cube_and_windows(tmp_path):
    (ref,) = greenearthnet.list_videos(FIX / "greenearthnet", "train")
    assert ref.id == GEN_TRAIN
    task = TASKS["greenearthnet"].at_scale("quick")
    assert train_refs(task, FIX / "greenearthnet") == [ref]
    windows = TrainClipDataset(task, [ref], num_frames=6)
    for _ in range(5):
        item = windows[0]
        assert item["video"].shape == (6, 3, 32, 32) and item["covariates"].shape == (6, 24)
        assert (item["days"][0] - 4) % 5 == 0 and item["days"].diff().eq(5).all()
    cube = xr.open_dataset(ref.path).drop_vars("s2_SCL")
    cube.to_netcdf(tmp_path / "noscl.nc")
    broken = replace(ref, path=tmp_path / "noscl.nc")
    with pytest.raises(ValueError, match="noscl.nc.*'s2_SCL'"):
        greenearthnet.read_clip(broken)


# ----------------------------------------------------------------------------- training windows


@needs_fixtures
def test_train_windows_are_random_and_reproducible():
    from bench.train import collate
    task = replace(TASKS["ucf101_cond128"].at_scale("quick"), resolution=64)
    refs = train_refs(task, FIX / "ucf101")
    assert [r.id for r in refs] == ["v_CliffDiving_g08_c03"]
    data = TrainClipDataset(task, refs, FIX / "ucf101", num_frames=8)
    torch.manual_seed(0)
    first = [data[0]["video"] for _ in range(3)]
    torch.manual_seed(0)
    assert all(torch.equal(a, data[0]["video"]) for a in first)
    assert not torch.equal(first[0], first[1])
    batch = collate([data[0], data[0]])
    assert batch.video.shape == (2, 8, 3, 64, 64) and batch.labels.tolist() == [21, 21]
    # too long for stride 3 (40 frames need 118 of 78): start 0 at stride 1, as FAR reads it
    long = TrainClipDataset(task, refs, num_frames=40, random_crop=False, hflip=False)
    assert torch.equal(long[0]["video"], ucf101.read_clip(refs[0], 0, 40, 1, 64)["video"])
    longer = TrainClipDataset(task, refs, num_frames=80)  # longer than the clip: stride 1, zero padding
    assert float(longer[0]["video"][78:].abs().max()) == 0.0 and float(longer[0]["video"][77].abs().max()) > 0
    short = TrainClipDataset(TASKS["minecraft_long"], minecraft.list_videos(FIX / "minecraft", "validation")[1:])
    with pytest.raises(ValueError, match="000001.mp4.*41 frames"):
        short[0]


# ----------------------------------------------------------------------------- data roots


def test_resolve_root_priority(tmp_path, monkeypatch):
    for var in ("FARZOO_DATA", "FARZOO_DMLAB_ROOT"):
        monkeypatch.delenv(var, raising=False)
    flag, config, env, data = (tmp_path / n for n in ("flag", "config", "env", "data"))
    for p in (flag, config, env, data / "dmlab"):
        p.mkdir(parents=True)
    assert resolve_root("dmlab") is None
    monkeypatch.setenv("FARZOO_DATA", str(data))
    assert resolve_root("dmlab") == data / "dmlab"
    assert resolve_root("minecraft") is None  # $FARZOO_DATA without that dataset
    monkeypatch.setenv("FARZOO_DMLAB_ROOT", str(env))
    assert resolve_root("dmlab") == env
    assert resolve_root("dmlab", config={"dmlab": str(config), "bair": "/nowhere"}) == config
    assert resolve_root("dmlab", config=config) == config
    assert resolve_root("dmlab", flag=str(flag), config=config) == flag
    with pytest.raises(FileNotFoundError, match=r"missing.*command-line flag"):
        resolve_root("dmlab", flag=tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="FARZOO_DMLAB_ROOT"):
        monkeypatch.setenv("FARZOO_DMLAB_ROOT", str(tmp_path / "gone"))
        resolve_root("dmlab")
    monkeypatch.delenv("FARZOO_DMLAB_ROOT")
    monkeypatch.setenv("FARZOO_DATA", str(tmp_path / "nodata"))
    with pytest.raises(FileNotFoundError, match="nodata"):
        resolve_root("dmlab")
    with pytest.raises(ValueError, match="unknown dataset"):
        resolve_root("kinetics")
