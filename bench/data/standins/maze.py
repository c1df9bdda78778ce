"""The long-context stand-in: a first-person 3D maze rendered by ray casting (DMLab and Minecraft).

The world is a block maze like DeepMind Lab's ``random_maze`` levels that TECO's DMLab-40k was
recorded in: ``(2k+1) x (2k+1)`` blocks with the border (9x9, i.e. a 7x7 maze, for DMLab), a
depth-first spanning tree plus a few removed walls that make loops. It is divided into themed
zones (floor colour, wall pattern family), and every wall block has its own texture, some with
a coloured poster, so places are recognisable.

An agent walks it with discrete actions: turn left / turn right by ``360 / HEADINGS`` degrees
and step ``1 / STEPS_PER_BLOCK`` block forward. Its route is a *tour*: it walks shortest paths
through a few goal rooms over and over (with random detours and look-arounds), so after its first
lap most frames show a pose it has been in before, tens to a hundred frames earlier: a model with
long context can copy what it saw, one with a short window cannot. Poses are integers (a lattice
position and a heading index) and frames are rendered once per distinct pose, so equal poses give
bit-identical frames (``first_visit`` / ``revisit_stats`` measure this).

Turns are 22.5 degrees rather than DMLab's 20, so that four turns make a right angle and the
agent's poses stay on the lattice. Everything is a pure function of ``(seed, split, index)``.

The files carry one array the real ones do not: ``poses`` int64 (T, 3), the pose (lattice x,
lattice y, heading) of every frame (in the DMLab npz, and in the npz next to each Minecraft mp4),
so evaluation can tell frames whose view the context already showed from new ones. The loaders
return it when present and do without it on real data.

Action encodings follow the real data (``../shared/DATASETS.md``):

- DMLab: 0 ``look_left``, 1 ``look_right``, 2 ``forward`` (the 3 values the real files hold);
  ``actions[t]`` is taken *after* frame ``t`` (it produces frame ``t + 1``); the agent looks left
  for its first 30 steps, as DMLab-40k's agent does; 300 frames.
- Minecraft: 0 none (frame 0 only), 1 forward, 2 turn left, 3 turn right; ``actions[t]``
  *produced* frame ``t``; 301 frames (the reset frame plus 300 steps).
"""

from __future__ import annotations

import math
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from bench.data.standins.files import save_npz, write_json_list, write_mp4

HEADINGS = 16  # 22.5-degree turns; heading 0 faces +x (east), 4 faces +y (south: rows grow downward)
STEPS_PER_BLOCK = 4  # forward steps per block: positions are multiples of 1/4 block
TEXELS = 32  # wall/floor texture size

TURN_LEFT, TURN_RIGHT, FORWARD = "L", "R", "F"  # agent moves, encoded per dataset below
DMLAB_ACTIONS = {TURN_LEFT: 0, TURN_RIGHT: 1, FORWARD: 2}
MINECRAFT_ACTIONS = {TURN_LEFT: 2, TURN_RIGHT: 3, FORWARD: 1}
MINECRAFT_NO_ACTION = 0
DMLAB_FORCED_LOOK_LEFT = 30  # DMLab-40k's agent looks left for its first 30 steps


@dataclass(frozen=True)
class Style:
    """How a maze world looks and how it is laid out."""

    name: str
    rooms: int  # k: the maze has (2k+1) x (2k+1) blocks
    extra_openings: float  # fraction of the remaining inner walls removed to make loops
    wall_height: float  # in blocks
    eye_height: float
    fov_deg: float
    fog_distance: float  # blocks at which fog covers half the colour
    supersample: int  # rendering at supersample x the size, then box-filtered
    sky_top: tuple[float, float, float]
    sky_horizon: tuple[float, float, float]
    fog: tuple[float, float, float]
    floors: tuple[tuple[float, float, float], ...]  # zone floor colours
    walls: tuple[tuple[float, float, float], ...]  # zone wall base colours
    patterns: tuple[str, ...] = ("dots", "bricks", "planks", "stone", "stripes")  # wall families
    sun: bool = False


DMLAB = Style(
    name="dmlab", rooms=4, extra_openings=0.2, wall_height=1.0, eye_height=0.5, fov_deg=90.0,
    fog_distance=14.0, supersample=2, sky_top=(0.48, 0.78, 0.97), sky_horizon=(0.66, 0.88, 0.99),
    fog=(0.70, 0.86, 0.96),
    floors=((0.55, 0.80, 0.40), (0.20, 0.45, 0.75), (0.90, 0.65, 0.20), (0.80, 0.45, 0.45),
            (0.60, 0.50, 0.80)),
    walls=((0.68, 0.68, 0.70), (0.55, 0.60, 0.70), (0.35, 0.55, 0.30), (0.80, 0.45, 0.35),
           (0.75, 0.70, 0.50)))
MINECRAFT = Style(
    name="minecraft", rooms=5, extra_openings=0.35, wall_height=2.0, eye_height=0.6, fov_deg=70.0,
    fog_distance=9.0, supersample=1, sky_top=(0.42, 0.62, 0.95), sky_horizon=(0.72, 0.82, 0.95),
    fog=(0.68, 0.76, 0.80), sun=True, patterns=("bricks", "planks", "stone", "leaves"),
    floors=((0.36, 0.55, 0.22), (0.30, 0.42, 0.50), (0.45, 0.36, 0.24), (0.42, 0.52, 0.25)),
    walls=((0.40, 0.30, 0.18), (0.50, 0.50, 0.50), (0.22, 0.42, 0.16), (0.55, 0.45, 0.30)))

STYLES = {"dmlab": DMLAB, "minecraft": MINECRAFT}
RESOLUTION = {"dmlab": 64, "minecraft": 128}
NUM_FRAMES = {"dmlab": 300, "minecraft": 301}


def rng_for(seed: int, dataset: str, split: str, index: int) -> np.random.Generator:
    """The generator of item ``index`` of ``split``: a pure function of its arguments."""
    return np.random.default_rng([seed, zlib.crc32(dataset.encode()), zlib.crc32(split.encode()), index])


# ----------------------------------------------------------------------------- the world


@dataclass(frozen=True)
class Maze:
    """A block maze and its textures. ``wall[y, x]``: block (x, y) is solid. Each block has a
    wall texture ``wall_tex[y, x]`` and a floor texture ``floor_tex[y, x]`` in ``atlas``."""

    wall: np.ndarray  # (n, n) bool
    wall_tex: np.ndarray  # (n, n) int
    floor_tex: np.ndarray  # (n, n) int
    atlas: np.ndarray  # (K, TEXELS, TEXELS, 3) float32 in [0, 1]
    zone: np.ndarray  # (n, n) int

    @property
    def size(self) -> int:
        return self.wall.shape[0]

    def rooms(self) -> list[tuple[int, int]]:
        """Open blocks at odd coordinates (the maze's cells), as (x, y)."""
        n = self.size
        return [(x, y) for y in range(1, n, 2) for x in range(1, n, 2) if not self.wall[y, x]]


def _carve(rng: np.random.Generator, rooms: int, extra: float) -> np.ndarray:
    n = 2 * rooms + 1
    wall = np.ones((n, n), bool)
    start = (2 * int(rng.integers(rooms)) + 1, 2 * int(rng.integers(rooms)) + 1)
    wall[start[1], start[0]] = False
    stack, seen = [start], {start}
    while stack:
        x, y = stack[-1]
        options = [(x + dx, y + dy) for dx, dy in ((2, 0), (-2, 0), (0, 2), (0, -2))
                   if 0 < x + dx < n and 0 < y + dy < n and (x + dx, y + dy) not in seen]
        if not options:
            stack.pop()
            continue
        nx, ny = options[int(rng.integers(len(options)))]
        wall[(y + ny) // 2, (x + nx) // 2] = wall[ny, nx] = False
        seen.add((nx, ny))
        stack.append((nx, ny))
    between = [(x, y) for y in range(1, n - 1) for x in range(1, n - 1) if wall[y, x] and (x + y) % 2 == 1]
    for i in rng.permutation(len(between))[:int(round(extra * len(between)))]:
        x, y = between[i]
        wall[y, x] = False
    return wall


def _texel_grid() -> tuple[np.ndarray, np.ndarray]:
    v, u = np.meshgrid((np.arange(TEXELS) + 0.5) / TEXELS, (np.arange(TEXELS) + 0.5) / TEXELS, indexing="ij")
    return u, v  # u across, v down


def _value_noise(rng: np.random.Generator, cells: int) -> np.ndarray:
    """(TEXELS, TEXELS) smooth-ish noise in [0, 1] that tiles."""
    coarse = rng.random((cells, cells))
    reps = TEXELS // cells
    fine = np.kron(coarse, np.ones((reps, reps)))
    return (fine + np.roll(fine, reps // 2, 0) + np.roll(fine, reps // 2, 1) + np.roll(fine, (reps // 2,) * 2, (0, 1))) / 4


def _pattern(rng: np.random.Generator, kind: str) -> np.ndarray:
    """(TEXELS, TEXELS) shading in roughly [0.5, 1.15] for a wall pattern family."""
    u, v = _texel_grid()
    if kind == "dots":  # DMLab's grey panels with dark round holes
        rows, cols = int(rng.integers(2, 4)), int(rng.integers(1, 3))
        fu, fv = (u * cols) % 1.0 - 0.5, (v * rows) % 1.0 - 0.5
        r = np.sqrt((fu * rows / max(rows, cols) * 1.6) ** 2 + fv ** 2)
        shade = np.where(r < 0.28, 0.55, 1.0)
        shade = np.where((u < 0.06) | (u > 0.94), 1.12, shade)  # panel edges
    elif kind == "bricks":
        rows = int(rng.integers(4, 7))
        row = np.floor(v * rows)
        fu = (u * 2 + 0.5 * (row % 2)) % 1.0
        mortar = ((v * rows) % 1.0 < 0.12) | (fu < 0.06)
        shade = np.where(mortar, 0.62, 0.92 + 0.16 * _value_noise(rng, 8))
    elif kind == "planks":
        boards = int(rng.integers(3, 6))
        fu = (u * boards) % 1.0
        grain = 0.9 + 0.15 * np.sin(v * 40 * math.pi / TEXELS * 8 + np.floor(u * boards) * 1.7)
        shade = np.where(fu < 0.08, 0.6, grain)
    elif kind == "stone":
        shade = 0.7 + 0.4 * _value_noise(rng, 8)
        shade = np.where(_value_noise(rng, 4) > 0.72, shade * 0.75, shade)
    elif kind == "leaves":  # blocky foliage with dark gaps
        blocks = np.kron(rng.random((8, 8)), np.ones((TEXELS // 8, TEXELS // 8)))
        shade = np.where(blocks < 0.2, 0.45, 0.75 + 0.45 * blocks)
    elif kind == "stripes":
        count = int(rng.integers(2, 5))
        shade = np.where((v * count) % 1.0 < 0.5, 1.05, 0.72)
    else:
        raise ValueError(kind)
    return shade.astype(np.float32)


POSTER_COLOURS = ((0.95, 0.85, 0.10), (0.90, 0.20, 0.20), (0.20, 0.35, 0.90), (0.95, 0.55, 0.10),
                  (0.70, 0.20, 0.80), (0.10, 0.75, 0.75), (0.98, 0.98, 0.98), (0.10, 0.10, 0.10))


def _poster(rng: np.random.Generator, tex: np.ndarray) -> np.ndarray:
    """Paint a coloured landmark (square, disc, cross or bar) on a wall texture."""
    u, v = _texel_grid()
    colour = np.array(POSTER_COLOURS[int(rng.integers(len(POSTER_COLOURS)))], np.float32)
    cu, cv, r = 0.5 + rng.uniform(-0.12, 0.12), rng.uniform(0.3, 0.55), rng.uniform(0.14, 0.22)
    shape = int(rng.integers(4))
    if shape == 0:
        mask = (np.abs(u - cu) < r) & (np.abs(v - cv) < r)
    elif shape == 1:
        mask = (u - cu) ** 2 + (v - cv) ** 2 < r ** 2
    elif shape == 2:
        mask = ((np.abs(u - cu) < r) & (np.abs(v - cv) < r / 3)) | ((np.abs(u - cu) < r / 3) & (np.abs(v - cv) < r))
    else:
        mask = np.abs(v - cv) < r / 2.5
    frame = (np.abs(u - cu) < r + 0.04) & (np.abs(v - cv) < r + 0.04) & (shape == 0)
    out = tex.copy()
    out[frame] = 0.15
    out[mask] = colour
    return out


def _floor_texture(rng: np.random.Generator, colour: np.ndarray, style: Style) -> np.ndarray:
    u, v = _texel_grid()
    noise = _value_noise(rng, 8 if style.name == "minecraft" else 4)
    shade = 0.88 + 0.2 * noise
    if style.name == "minecraft":  # blocky texels
        shade = 0.8 + 0.35 * np.kron(rng.random((8, 8)), np.ones((TEXELS // 8, TEXELS // 8)))
    edge = (u < 0.03) | (v < 0.03)
    shade = np.where(edge, shade * 0.9, shade)
    return np.clip(colour[None, None] * shade[..., None], 0, 1).astype(np.float32)


def make_maze(rng: np.random.Generator, style: Style) -> Maze:
    wall = _carve(rng, style.rooms, style.extra_openings)
    n = wall.shape[0]
    # zones: nearest of a few seed rooms (Manhattan), each with a floor colour and a wall pattern
    num_zones = int(rng.integers(3, 5))
    seeds = rng.integers(0, n, size=(num_zones, 2))
    ys, xs = np.mgrid[0:n, 0:n]
    dist = np.abs(xs[None] - seeds[:, 0, None, None]) + np.abs(ys[None] - seeds[:, 1, None, None])
    zone = np.argmin(dist, axis=0)
    floor_ids = rng.permutation(len(style.floors))
    wall_ids = rng.permutation(len(style.walls))
    patterns = rng.permutation(len(style.patterns))
    textures = []
    floor_tex = np.zeros((n, n), np.int64)
    for z in range(num_zones):
        textures.append(_floor_texture(rng, np.array(style.floors[floor_ids[z % len(style.floors)]], np.float32), style))
    for y in range(n):
        for x in range(n):
            floor_tex[y, x] = zone[y, x]
    wall_tex = np.zeros((n, n), np.int64)
    for y in range(n):
        for x in range(n):
            if not wall[y, x]:
                continue
            z = zone[y, x]
            base = np.array(style.walls[wall_ids[z % len(style.walls)]], np.float32)
            base = np.clip(base * rng.uniform(0.85, 1.15) + rng.uniform(-0.05, 0.05, 3), 0, 1)
            kind = style.patterns[patterns[z % len(style.patterns)]]
            tex = np.clip(base[None, None] * _pattern(rng, kind)[..., None], 0, 1)
            if rng.random() < 0.18:
                tex = _poster(rng, tex)
            wall_tex[y, x] = len(textures)
            textures.append(tex.astype(np.float32))
    return Maze(wall=wall, wall_tex=wall_tex, floor_tex=floor_tex, atlas=np.stack(textures), zone=zone)


# ----------------------------------------------------------------------------- motion


def _heading_vectors() -> np.ndarray:
    """(HEADINGS, 2) unit (dx, dy) per heading, exact on the axes."""
    out = np.zeros((HEADINGS, 2))
    for h in range(HEADINGS):
        if h % (HEADINGS // 4) == 0:
            out[h] = [(1, 0), (0, 1), (-1, 0), (0, -1)][h // (HEADINGS // 4)]
        else:
            a = 2 * math.pi * h / HEADINGS
            out[h] = [math.cos(a), math.sin(a)]
    return out


HEADING_VECTORS = _heading_vectors()
AXIS_STEP = ((1, 0), (0, 1), (-1, 0), (0, -1))  # per quarter turn


def pose_position(pose: np.ndarray) -> np.ndarray:
    """World (x, y) of lattice poses ``(..., 3)`` = (ix, iy, heading): block centres at +0.5."""
    return pose[..., :2] / STEPS_PER_BLOCK + 0.5


def _open_at(wall: np.ndarray, ix: int, iy: int) -> bool:
    """A lattice point is free when every block it lies on or between is open."""
    xs = {ix // STEPS_PER_BLOCK, -(-ix // STEPS_PER_BLOCK)}
    ys = {iy // STEPS_PER_BLOCK, -(-iy // STEPS_PER_BLOCK)}
    n = wall.shape[0]
    return all(0 <= x < n and 0 <= y < n and not wall[y, x] for x in xs for y in ys)


def step(wall: np.ndarray, pose: tuple[int, int, int], move: str) -> tuple[int, int, int]:
    """The pose after one move. Forward moves along the axis nearest the heading (the exact heading
    when it is axis-aligned; ties go to the axis clockwise of it) and is blocked by walls."""
    ix, iy, h = pose
    if move == TURN_LEFT:
        return ix, iy, (h - 1) % HEADINGS
    if move == TURN_RIGHT:
        return ix, iy, (h + 1) % HEADINGS
    if move != FORWARD:
        raise ValueError(f"unknown move {move!r}")
    quarter = HEADINGS // 4
    axis = ((h + quarter // 2) // quarter) % 4
    dx, dy = AXIS_STEP[axis]
    if _open_at(wall, ix + dx, iy + dy):
        return ix + dx, iy + dy, h
    return pose


def _bfs_path(wall: np.ndarray, start: tuple[int, int], goal: tuple[int, int]) -> list[tuple[int, int]]:
    """Shortest block path start -> goal (inclusive), deterministic tie-breaking."""
    prev = {start: start}
    queue = deque([start])
    while queue:
        cur = queue.popleft()
        if cur == goal:
            break
        x, y = cur
        for dx, dy in AXIS_STEP:
            nxt = (x + dx, y + dy)
            if nxt not in prev and not wall[nxt[1], nxt[0]]:
                prev[nxt] = cur
                queue.append(nxt)
    if goal not in prev:
        raise ValueError(f"{goal} is not reachable from {start}")
    path = [goal]
    while path[-1] != start:
        path.append(prev[path[-1]])
    return path[::-1]


def _turn_moves(h: int, target: int, tie: str) -> list[str]:
    diff = (target - h) % HEADINGS
    if diff == 0:
        return []
    if diff == HEADINGS // 2:
        return [tie] * diff
    return [TURN_RIGHT] * diff if diff < HEADINGS // 2 else [TURN_LEFT] * (HEADINGS - diff)


def _route(path: list[tuple[int, int]], h: int, tie: str) -> tuple[list[str], int]:
    """Moves that walk a block path from its first block's centre, and the final heading."""
    moves: list[str] = []
    for (x0, y0), (x1, y1) in zip(path, path[1:]):
        target = AXIS_STEP.index((x1 - x0, y1 - y0)) * (HEADINGS // 4)
        moves += _turn_moves(h, target, tie)
        h = target
        moves += [FORWARD] * STEPS_PER_BLOCK
    return moves, h


@dataclass(frozen=True)
class Trajectory:
    """A walk through a maze. ``poses[t]`` = (ix, iy, heading) of frame t (lattice units),
    ``moves[t]`` the move from pose t to pose t + 1."""

    maze: Maze
    style: Style
    poses: np.ndarray  # (T, 3) int64
    moves: tuple[str, ...]  # T - 1 entries


def tour(rng: np.random.Generator, maze: Maze, start: tuple[int, int], heading: int, num_moves: int, *,
         initial: list[str] | tuple[str, ...] = (), min_lap: int = 32, max_lap: int = 96,
         detour: float = 0.12, look_around: float = 0.12) -> list[str]:
    """``num_moves`` moves from room ``start`` at ``heading``: ``initial``, then shortest paths
    through 2-4 goal rooms, lap after lap. On reaching a goal the agent sometimes (``detour``)
    makes a short excursion to a room up to 6 blocks away first, or (``look_around``) turns a full circle. The goals are drawn
    so that a lap takes ``min_lap``..``max_lap`` moves where the maze allows; from the second lap
    on, a lap repeats the poses of the previous one, except around detours."""
    rooms = maze.rooms()
    tie = TURN_RIGHT if rng.random() < 0.5 else TURN_LEFT

    def lap_moves(goals: list[tuple[int, int]]) -> int:
        h, total = 0, 0
        for a, b in zip(goals, goals[1:] + goals[:1]):
            m, h = _route(_bfs_path(maze.wall, a, b), h, tie)
            total += len(m)
        return total

    best, best_err = None, 0
    for _ in range(40):
        k = int(rng.integers(2, 5))
        goals = [rooms[i] for i in rng.choice(len(rooms), size=min(k, len(rooms)), replace=False)]
        length = lap_moves(goals)
        err = max(min_lap - length, length - max_lap, 0)
        if best is None or err < best_err:
            best, best_err = goals, err
        if err == 0:
            break
    goals = best
    moves = list(initial)
    h = (heading - moves.count(TURN_LEFT) + moves.count(TURN_RIGHT)) % HEADINGS
    cur, g = start, 0
    while len(moves) < num_moves:
        target = goals[g % len(goals)]
        m, h = _route(_bfs_path(maze.wall, cur, target), h, tie)
        moves += m
        cur, g = target, g + 1
        r = rng.random()
        near = [q for q in rooms if 2 <= len(_bfs_path(maze.wall, cur, q)) - 1 <= 6]
        if r < detour and near:  # a short excursion to a nearby room
            other = near[int(rng.integers(len(near)))]
            m, h = _route(_bfs_path(maze.wall, cur, other), h, tie)
            moves += m
            cur = other
        elif r < detour + look_around:
            moves += [TURN_LEFT if rng.random() < 0.5 else TURN_RIGHT] * HEADINGS
    return moves[:num_moves]


def trajectory(dataset: str, seed: int = 0, split: str = "train", index: int = 0,
               num_frames: int | None = None) -> Trajectory:
    """The maze and walk of item ``index`` of ``split`` (a pure function of the arguments)."""
    style = STYLES[dataset]
    frames = NUM_FRAMES[dataset] if num_frames is None else num_frames
    rng = rng_for(seed, dataset, split, index)
    maze = make_maze(rng, style)
    rooms = maze.rooms()
    start = rooms[int(rng.integers(len(rooms)))]
    heading = int(rng.integers(4)) * (HEADINGS // 4)
    initial = [TURN_LEFT] * min(DMLAB_FORCED_LOOK_LEFT, frames - 1) if dataset == "dmlab" else []
    moves = tour(rng, maze, start, heading, frames - 1, initial=initial)
    pose = (start[0] * STEPS_PER_BLOCK, start[1] * STEPS_PER_BLOCK, heading)
    poses = [pose]
    for m in moves:
        pose = step(maze.wall, pose, m)
        poses.append(pose)
    return Trajectory(maze=maze, style=style, poses=np.array(poses, np.int64), moves=tuple(moves))


def encode_actions(dataset: str, moves: tuple[str, ...] | list[str], num_frames: int) -> np.ndarray:
    """Per-frame action ids as the real files store them (see the module doc).

    DMLab: ``actions[t]`` = the move after frame t (so the walk needs one move past the last
    frame); Minecraft: ``actions[0] = 0`` (none), ``actions[t]`` = the move into frame t."""
    if dataset == "dmlab":
        if len(moves) < num_frames:
            raise ValueError(f"dmlab needs {num_frames} moves (one after every frame), got {len(moves)}")
        return np.array([DMLAB_ACTIONS[m] for m in moves[:num_frames]], np.int64)
    if dataset == "minecraft":
        if len(moves) < num_frames - 1:
            raise ValueError(f"minecraft needs {num_frames - 1} moves, got {len(moves)}")
        return np.array([MINECRAFT_NO_ACTION] + [MINECRAFT_ACTIONS[m] for m in moves[:num_frames - 1]], np.int32)
    raise ValueError(f"no maze stand-in for {dataset!r}")


# ----------------------------------------------------------------------------- revisits


def first_visit(poses: np.ndarray) -> np.ndarray:
    """For each frame t, the earliest frame s < t with the same pose (lattice position and
    heading), or -1 when the pose is new."""
    seen: dict[tuple[int, ...], int] = {}
    out = np.full(len(poses), -1, np.int64)
    for t, p in enumerate(map(tuple, np.asarray(poses).tolist())):
        if p in seen:
            out[t] = seen[p]
        else:
            seen[p] = t
    return out


def revisit_stats(poses: np.ndarray, context: int = 144, after: int = 150) -> dict[str, float]:
    """How much of a walk can be predicted from memory.

    - ``revisit_after``: share of frames t >= ``after`` whose pose occurred before t;
    - ``in_context``: share of frames t >= ``context`` whose pose occurred in frames < ``context``
      (what a model given the first ``context`` frames, as in the 144 -> 156 protocol, has seen);
    - ``median_gap``: median distance t - s to the most recent earlier frame s with the pose,
      over revisited frames t >= ``after``."""
    poses = np.asarray(poses)
    keys = [tuple(p) for p in poses.tolist()]
    last: dict[tuple[int, ...], int] = {}
    gaps, revisited = [], 0
    for t, k in enumerate(keys):
        if k in last and t >= after:
            revisited += 1
            gaps.append(t - last[k])
        last[k] = t
    context_set = set(keys[:context])
    tail = keys[context:]
    n_after = max(len(keys) - after, 1)
    return {"revisit_after": revisited / n_after,
            "in_context": sum(k in context_set for k in tail) / max(len(tail), 1),
            "median_gap": float(np.median(gaps)) if gaps else 0.0}


# ----------------------------------------------------------------------------- rendering


def _camera_rays(style: Style, width: int) -> np.ndarray:
    """(HEADINGS, width, 2) ray directions with unit forward component, one per pixel column."""
    plane = math.tan(math.radians(style.fov_deg) / 2)
    camx = 2 * (np.arange(width) + 0.5) / width - 1
    d = HEADING_VECTORS
    right = np.stack([-d[:, 1], d[:, 0]], axis=1)
    return d[:, None, :] + right[:, None, :] * (plane * camx)[None, :, None]


def _cast(wall: np.ndarray, px: np.ndarray, py: np.ndarray, rx: np.ndarray, ry: np.ndarray):
    """DDA grid traversal of every ray at once: perpendicular distance, side (0: an x face,
    1: a y face) and hit block."""
    mx, my = np.floor(px).astype(np.int64), np.floor(py).astype(np.int64)
    with np.errstate(divide="ignore"):
        ddx = np.where(rx == 0, np.inf, np.abs(1.0 / rx))
        ddy = np.where(ry == 0, np.inf, np.abs(1.0 / ry))
    sx, sy = np.where(rx < 0, -1, 1), np.where(ry < 0, -1, 1)
    side_x = np.where(rx < 0, (px - mx) * ddx, (mx + 1 - px) * ddx)
    side_y = np.where(ry < 0, (py - my) * ddy, (my + 1 - py) * ddy)
    side = np.zeros(px.shape, np.int8)
    hit = np.zeros(px.shape, bool)
    n = wall.shape[0]
    for _ in range(4 * n):
        go_x = ~hit & (side_x < side_y)
        go_y = ~hit & ~go_x
        side_x = np.where(go_x, side_x + ddx, side_x)
        mx = np.where(go_x, mx + sx, mx)
        side_y = np.where(go_y, side_y + ddy, side_y)
        my = np.where(go_y, my + sy, my)
        side = np.where(go_x, 0, np.where(go_y, 1, side)).astype(np.int8)
        np.clip(mx, 0, n - 1, out=mx)
        np.clip(my, 0, n - 1, out=my)
        hit |= wall[my, mx]
        if hit.all():
            break
    perp = np.where(side == 0, side_x - ddx, side_y - ddy)
    return perp, side, mx, my


def _render_unique(maze: Maze, style: Style, poses: np.ndarray, size: int) -> np.ndarray:
    """float32 (M, size, size, 3) in [0, 1] for M poses (no supersampling here).

    Above the horizon a pixel shows a wall or the sky, below it a wall or the floor; every wall
    and floor texel is looked up in one gather from the flattened atlas."""
    m, half = len(poses), size // 2
    pos = pose_position(poses.astype(np.float64))
    rays = _camera_rays(style, size)[poses[:, 2]]  # (M, W, 2)
    px = np.broadcast_to(pos[:, None, 0], (m, size))
    py = np.broadcast_to(pos[:, None, 1], (m, size))
    rx, ry = rays[..., 0], rays[..., 1]
    perp, side, bx, by = _cast(maze.wall, px, py, rx, ry)
    wall_x = np.where(side == 0, py + perp * ry, px + perp * rx)
    u = wall_x - np.floor(wall_x)
    u = np.where(((side == 0) & (rx > 0)) | ((side == 1) & (ry < 0)), 1.0 - u, u)
    tt = TEXELS * TEXELS
    ut = np.minimum((u * TEXELS).astype(np.int32), TEXELS - 1)
    col_base = (maze.wall_tex[by, bx] * tt + ut).astype(np.int32)[:, None, :]  # (M, 1, W)

    focal = (size / 2) / math.tan(math.radians(style.fov_deg) / 2)
    yc = (np.arange(size) + 0.5 - size / 2).astype(np.float32)
    perp32 = perp.astype(np.float32)[:, None, :]
    fog = np.array(style.fog, np.float32)
    fog_wall = 1.0 / (1.0 + (perp32 / style.fog_distance) ** 2)  # (M, 1, W)
    shade = np.where(side == 1, 0.78, 1.0).astype(np.float32)[:, None, :]
    atlas = maze.atlas.reshape(-1, 3)
    out = np.empty((m, size, size, 3), np.float32)

    # wall texture row: height on the wall, from its top, wrapped every block
    v = (style.wall_height - style.eye_height) + (yc / np.float32(focal))[None, :, None] * perp32
    v = v - np.floor(v) if style.wall_height != 1.0 else np.clip(v, 0, 1)
    vt = np.minimum((v * TEXELS).astype(np.int32), TEXELS - 1)
    wall_idx = col_base + vt * TEXELS  # (M, H, W)

    # upper half: wall or sky
    top = -focal * (style.wall_height - style.eye_height) / perp32
    up_wall = yc[None, :half, None] >= top
    t = np.clip(-yc[:half] / half, 0, 1)[:, None]
    sky = np.array(style.sky_horizon, np.float32) * (1 - t) + np.array(style.sky_top, np.float32) * t  # (half, 3)
    sky = np.broadcast_to(sky[None, :, None, :], (m, half, size, 3))
    if style.sun:
        sun = np.array([0.6, -0.55, 0.45])
        sun = sun / np.linalg.norm(sun)
        dz = (-yc[:half] / focal)[None, :, None]
        dot = rx[:, None, :] * sun[0] + ry[:, None, :] * sun[1] + dz * sun[2]
        norm2 = rx[:, None, :] ** 2 + ry[:, None, :] ** 2 + dz ** 2
        in_sun = (dot > 0) & (dot * dot > 0.992 * norm2)
        sky = np.where(in_sun[..., None], np.array([1.0, 0.97, 0.80], np.float32), sky)
    a = np.where(up_wall, shade * fog_wall, 0.0)[..., None]
    texel = atlas[wall_idx[:, :half]]
    out[:, :half] = np.where(up_wall[..., None], texel * a + fog * (1 - np.where(up_wall, fog_wall, 1.0))[..., None], sky)

    # lower half: wall or floor
    bottom = focal * style.eye_height / perp32
    low_wall = yc[None, half:, None] < bottom
    dist = (focal * style.eye_height / yc[half:])  # (H/2,) floor distance per row
    wx = pos[:, None, None, 0].astype(np.float32) + dist[None, :, None] * rx.astype(np.float32)[:, None, :]
    wy = pos[:, None, None, 1].astype(np.float32) + dist[None, :, None] * ry.astype(np.float32)[:, None, :]
    fx, fy = np.floor(wx), np.floor(wy)
    n = maze.size
    block = maze.floor_tex[np.clip(fy, 0, n - 1).astype(np.int32), np.clip(fx, 0, n - 1).astype(np.int32)]
    fu = np.minimum(((wx - fx) * TEXELS).astype(np.int32), TEXELS - 1)
    fv = np.minimum(((wy - fy) * TEXELS).astype(np.int32), TEXELS - 1)
    idx = np.where(low_wall, wall_idx[:, half:], block * tt + fv * TEXELS + fu)
    fog_floor = (1.0 / (1.0 + (dist / style.fog_distance) ** 2))[None, :, None]
    f = np.where(low_wall, fog_wall, fog_floor)
    a = np.where(low_wall, shade * fog_wall, fog_floor)
    out[:, half:] = atlas[idx] * a[..., None] + fog * (1 - f)[..., None]
    return out


def render(maze: Maze, style: Style, poses: np.ndarray, size: int, chunk_pixels: int = 1 << 21) -> np.ndarray:
    """uint8 (T, size, size, 3) frames of ``poses`` (T, 3). Each distinct pose is rendered once, so
    frames with equal poses are identical."""
    poses = np.asarray(poses, np.int64)
    unique, inverse = np.unique(poses, axis=0, return_inverse=True)
    ss = style.supersample
    full = size * ss
    per_chunk = max(1, chunk_pixels // (full * full))
    frames = np.empty((len(unique), size, size, 3), np.uint8)
    for a in range(0, len(unique), per_chunk):
        img = _render_unique(maze, style, unique[a:a + per_chunk], full)
        if ss > 1:
            img = img.reshape(len(img), size, ss, size, ss, 3).mean(axis=(2, 4))
        frames[a:a + per_chunk] = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return frames[inverse.reshape(-1)]


def generate(dataset: str, seed: int = 0, split: str = "train", index: int = 0,
             num_frames: int | None = None, size: int | None = None) -> tuple[np.ndarray, np.ndarray, Trajectory]:
    """``(video uint8 (T, H, W, 3), actions (T,), trajectory)`` of one stand-in trajectory, in
    the real files' dtypes and action encoding (DMLab int64, Minecraft int32)."""
    frames = NUM_FRAMES[dataset] if num_frames is None else num_frames
    walk = trajectory(dataset, seed, split, index, num_frames=frames + (1 if dataset == "dmlab" else 0))
    video = render(walk.maze, walk.style, walk.poses[:frames], RESOLUTION[dataset] if size is None else size)
    return video, encode_actions(dataset, walk.moves, frames), walk


# ----------------------------------------------------------------------------- files

SPLIT_FOLDERS = (("train", "train"), ("test", "val"))  # (TECO folder, FAR list suffix)
PER_WORKER = 1000  # files per TECO worker folder


def relative_file(dataset: str, folder: str, index: int) -> str:
    """TECO's ``<split>/<worker>/<n>`` (DMLab) or ``<split>/<worker>/<n:06d>`` (Minecraft), no suffix."""
    worker, n = divmod(index, PER_WORKER)
    return f"{folder}/{worker}/{n}" if dataset == "dmlab" else f"{folder}/{worker}/{n:06d}"


def write_item(root: str, dataset: str, folder: str, index: int, seed: int) -> None:
    """Write one trajectory of ``folder`` (train/test) in the real file format."""
    video, actions, walk = generate(dataset, seed, folder, index)
    poses = walk.poses[:len(video)].astype(np.int64)  # frame t's pose (real files have no such array)
    stem = Path(root) / relative_file(dataset, folder, index)
    if dataset == "dmlab":
        save_npz(stem.with_suffix(".npz"), video=video, actions=actions, poses=poses)
    else:
        write_mp4(stem.with_suffix(".mp4"), video, fps=20, codec="mpeg4")
        save_npz(stem.with_suffix(".npz"), actions=actions, poses=poses)


def write(dataset: str, root: str | Path, *, num_train: int, num_eval: int, seed: int,
          map_fn: Callable[[Callable, Iterable], Iterable] = map) -> dict:
    """The whole layout: TECO's folders plus FAR's JSON lists (``<dataset>_{train,val}.json``,
    paths relative to ``root``). ``map_fn`` runs the per-trajectory jobs (``map`` or a pool's)."""
    root = Path(root)
    counts = {"train": num_train, "test": num_eval}
    jobs = [(str(root), dataset, folder, i, seed) for folder, _ in SPLIT_FOLDERS for i in range(counts[folder])]
    for _ in map_fn(_write_job, jobs):
        pass
    for folder, suffix in SPLIT_FOLDERS:
        entries = []
        for i in range(counts[folder]):
            rel = relative_file(dataset, folder, i)
            entries.append({"video_path": f"{rel}.npz"} if dataset == "dmlab"
                           else {"video_path": f"{rel}.mp4", "action_path": f"{rel}.npz"})
        write_json_list(root / f"{dataset}_{suffix}.json", entries)
    return {"resolution": RESOLUTION[dataset], "num_frames": NUM_FRAMES[dataset],
            "headings": HEADINGS, "steps_per_block": STEPS_PER_BLOCK,
            "poses": "poses int64 (T, 3) per frame: lattice x, lattice y (1/steps_per_block block), heading",
            "actions": ({"0": "look_left", "1": "look_right", "2": "forward", "alignment": "actions[t] after frame t"}
                        if dataset == "dmlab" else
                        {"0": "none (frame 0)", "1": "forward", "2": "turn left", "3": "turn right",
                         "alignment": "actions[t] produced frame t"})}


def _write_job(job: tuple) -> None:
    write_item(*job)
