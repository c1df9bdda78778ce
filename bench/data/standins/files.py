"""Byte-reproducible writers for the stand-ins' files: mp4 (PyAV), npz, JSON lists.

The same arrays always give the same bytes on one machine: frames are converted to YUV 4:2:0 here
(BT.601 limited range, what decoders assume for untagged yuv420p; FFmpeg's swscale conversion was
seen to vary from run to run), every byte of a frame buffer is set, encoders run single-threaded
(x264's output depends on its thread count) and x264's mbtree is off (see ``MP4_CODECS``), npz members carry a fixed timestamp (``np.savez`` stamps the current time), and JSON is
written with fixed formatting.
"""

from __future__ import annotations

import io
import json
import zipfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# name -> (FFmpeg encoder, pixel format, encoder options)
MP4_CODECS: dict[str, tuple[str, str, dict[str, str]]] = {
    # FAR's UCF-101 mp4s and the BAIR fixture: H.264 High, yuv420p
    # (mbtree off: x264's macroblock-tree rate control reads uninitialised memory, so its output
    # changed with whatever the heap held; seen under pytest)
    "h264": ("libx264", "yuv420p", {"crf": "16", "preset": "veryfast", "x264-params": "mbtree=0"}),
    # TECO's Minecraft collector (OpenCV fourcc mp4v): MPEG-4 Part 2, yuv420p; near-lossless quantiser
    "mpeg4": ("mpeg4", "yuv420p", {"qmin": "2", "qmax": "3"}),
}
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def rgb_to_yuv420p(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 (T, H, W, 3) RGB -> Y (T, H, W), U and V (T, H/2, W/2): BT.601 limited range in
    FFmpeg's 8-bit integer form, chroma from the 2x2 mean colour. Integer arithmetic only."""
    planes = np.moveaxis(np.asarray(frames), -1, 0).astype(np.uint16)  # (3, T, H, W)
    r, g, b = planes
    y = (r * 66 + g * 129 + b * 25 + 128) >> 8
    y += 16
    pairs = planes[:, :, 0::2] + planes[:, :, 1::2]
    quad = (pairs[..., 0::2] + pairs[..., 1::2]).astype(np.int32)  # 4 x the 2x2 mean
    r4, g4, b4 = quad
    u = ((b4 * 112 - r4 * 38 - g4 * 74 + 512) >> 10) + 128
    v = ((r4 * 112 - g4 * 94 - b4 * 18 + 512) >> 10) + 128
    return y.astype(np.uint8), np.clip(u, 0, 255).astype(np.uint8), np.clip(v, 0, 255).astype(np.uint8)


def _frame(planes: tuple[np.ndarray, np.ndarray, np.ndarray]) -> av.VideoFrame:
    """A yuv420p ``av.VideoFrame`` whose every byte is set, including the padding at the end of
    each line (edge pixels repeated), so no encoder can see leftover memory."""
    h, w = planes[0].shape
    out = av.VideoFrame(w, h, "yuv420p")
    for plane, values in zip(out.planes, planes):
        rows, width = plane.buffer_size // plane.line_size, values.shape[1]
        if plane.line_size == width and rows == values.shape[0]:
            plane.update(np.ascontiguousarray(values))
            continue
        full = np.empty((rows, plane.line_size), np.uint8)
        full[:values.shape[0], :width] = values
        full[:values.shape[0], width:] = values[:, -1:]
        full[values.shape[0]:] = full[values.shape[0] - 1]
        plane.update(full)
    return out


def write_mp4(path: Path, frames: np.ndarray, fps: float, codec: str) -> Path:
    """Encode uint8 (T, H, W, 3) RGB frames into an mp4 (``codec`` a key of ``MP4_CODECS``)."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{path}: frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(f"{path}: yuv420p needs even height and width, got {frames.shape[1:3]}")
    encoder, pix_fmt, options = MP4_CODECS[codec]
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream(encoder, rate=Fraction(fps).limit_denominator(1001), options=dict(options))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        stream.codec_context.thread_count = 1  # x264's bitstream depends on its thread count
        y, u, v = rgb_to_yuv420p(frames)
        for t in range(len(frames)):
            for packet in stream.encode(_frame((y[t], u[t], v[t]))):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def save_npz(path: Path, compress: bool = True, **arrays: np.ndarray) -> Path:
    """``np.savez_compressed`` (or ``np.savez``) with a fixed member timestamp."""
    path.parent.mkdir(parents=True, exist_ok=True)
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=method) as archive:
        for name, array in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_FIXED_TIME)
            info.compress_type = method
            info.external_attr = 0o644 << 16
            archive.writestr(info, buf.getvalue())
    return path


def write_json_list(path: Path, entries: list[dict]) -> Path:
    """A FAR data list: a JSON array of objects (paths relative to the list's folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries, indent=1) + "\n")
    return path


def write_lines(path: Path, lines: list[str], newline: str = "\r\n", final_newline: bool = True) -> Path:
    """A text list file (the official UCF-101 lists use CRLF)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = newline.join(lines) + (newline if final_newline and lines else "")
    path.write_bytes(text.encode())
    return path
