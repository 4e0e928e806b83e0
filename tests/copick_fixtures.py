"""A tiny copick project for the tests, written as the CZ cryo-ET data portal lays one out: a
config JSON with its objects and two roots (a read-only ``portal`` static root holding the data,
an empty ``overlay``), runs with an OME-Zarr tomogram (Zarr format 2, two levels, blobs of a
size per object at known positions) and picks files of a curator and of another user; and a
project whose one run is a tomogram of the project's own simulator, picked at its ground truth."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np
import zarr
from tomogram_fixtures import maps

from cryoavae.geometry.rotations import random_rotations
from cryoavae.sources.tomogram import TomogramConfig, simulate_tomogram

VOXEL = 10.0  # Å, level 0; level 1 is twice that
OBJECTS = [
    {"name": "ribosome", "is_particle": True, "pdb_id": "1BXN", "label": 1, "radius": 60},
    {"name": "proteasome", "is_particle": True, "pdb_id": "1S3X", "label": 2, "radius": 50},
    {"name": "ferritin", "is_particle": True, "pdb_id": "3H84", "label": 3, "radius": 40},
    {"name": "membrane", "is_particle": False, "label": 4},
]
SIGMA = {"ribosome": 4.0, "proteasome": 2.0, "ferritin": 3.0}  # blob widths, level-0 voxels


@dataclass
class Project:
    """Where the fixture wrote things, and the truth: per run, object -> locations (n, 3) Å and
    the ``transformation_`` of each pick."""

    config: Path
    static: Path
    overlay: Path
    runs: list[str]
    truth: dict


def write_tomogram(path: Path, volume: np.ndarray, voxel: float, levels: int = 2) -> None:
    """An OME-NGFF 0.4 multiscale group: level k is the volume 2^k times coarser (means of
    2 x 2 x 2 blocks), its voxel size the ``scale`` of its coordinateTransformations."""
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    datasets, data = [], volume.astype(np.float32)
    for k in range(levels):
        if k:
            z, y, x = (n // 2 * 2 for n in data.shape)
            data = data[:z, :y, :x].reshape(z // 2, 2, y // 2, 2, x // 2, 2).mean(axis=(1, 3, 5))
        group.create_array(str(k), data=data, chunks=(16, 16, 16))
        scale = [voxel * 2**k] * 3
        transform = [{"type": "scale", "scale": scale}]
        datasets.append({"path": str(k), "coordinateTransformations": transform})
    axes = [{"name": a, "type": "space", "unit": "angstrom"} for a in "zyx"]
    group.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": datasets}]


def write_picks(folder: Path, user: str, session: str, obj: str, run: str, locations, transforms):
    points = [
        {"location": dict(zip("xyz", map(float, loc), strict=True)),
         "transformation_": np.asarray(t).tolist(), "instance_id": 0, "score": 1.0}
        for loc, t in zip(locations, transforms, strict=True)
    ]  # fmt: skip
    body = {
        "pickable_object_name": obj,
        "user_id": user,
        "session_id": session,
        "run_name": run,
        "voxel_spacing": VOXEL,
        "unit": "angstrom",
        "points": points,
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{user}_{session}_{obj}.json"
    path.write_text(json.dumps(body))
    return path


def copick_project(
    root: Path,
    runs=("TS_1", "TS_2"),
    shape=(32, 64, 64),
    grid=(16, 48),
    z=16,
    seed=0,
) -> Project:
    """Runs whose level-0 tomogram ``shape`` (z, y, x) holds a blob at every ``grid`` x ``grid``
    (x, y) position at depth ``z`` (voxels), objects taking turns; the curator's picks (user
    ``curator``, session ``0``) list them all, ribosomes with an orientation; user ``other``
    picked two ribosomes more. Noise keeps every box's voxels distinct."""
    rng = np.random.default_rng(seed)
    static, overlay = root / "portal", root / "overlay"
    overlay.mkdir(parents=True)
    names = [o["name"] for o in OBJECTS if o["is_particle"]]
    grids = np.meshgrid(
        np.arange(shape[0]), np.arange(shape[1]), np.arange(shape[2]), indexing="ij"
    )
    truth = {}
    for r, run in enumerate(runs):
        volume = 0.05 * rng.standard_normal(shape)
        picks = {name: [] for name in names}
        for i, (x, y) in enumerate((x, y) for y in grid for x in grid):
            name = names[(i + r) % len(names)]
            d2 = (grids[2] - x) ** 2 + (grids[1] - y) ** 2 + (grids[0] - z) ** 2
            volume += np.exp(-d2 / (2 * SIGMA[name] ** 2))
            picks[name].append(np.array([x, y, z], float) * VOXEL)
        folder = static / "ExperimentRuns" / run
        write_tomogram(folder / f"VoxelSpacing{VOXEL:.3f}" / "wbp.zarr", volume, VOXEL)
        truth[run] = {}
        for name, locations in picks.items():
            transforms = np.tile(np.eye(4), (len(locations), 1, 1))
            if name == "ribosome":
                transforms[:, :3, :3] = random_rotations(len(locations), rng)
            write_picks(folder / "Picks", "curator", "0", name, run, locations, transforms)
            truth[run][name] = (np.array(locations).reshape(-1, 3), transforms)
        extra = np.array([[5.0, 6.0, 7.0], [8.0, 9.0, 10.0]]) * VOXEL
        write_picks(
            folder / "Picks", "other", "1", "ribosome", run, extra, np.tile(np.eye(4), (2, 1, 1))
        )
    config = root / "copick_config.json"
    config.write_text(
        json.dumps(
            {
                "config_type": "filesystem",
                "name": "tiny",
                "pickable_objects": OBJECTS,
                "overlay_root": f"local://{overlay}",
                "static_root": f"local://{static}",
            }
        )
    )
    return Project(config, static, overlay, list(runs), truth)


def simulated_copick_project(
    root: Path, per_class: int = 14, unseen_per_class: int = 6, seed: int = 3, size_px: int = 192
) -> Project:
    """One run ``TS_1`` whose tomogram is the project's own simulator's (a crowded sample of the
    three particle objects' bundled structures at 10 Å, tilt series, back-projection), written as
    a two-level OME-Zarr; the curator's picks of each object are the simulator's ground truth:
    each particle's position and the matrix ``A`` that turns its class map onto it (copick's
    ``transformation_``). ``truth`` holds that plan, read from memory, not from the files.
    ``size_px``: the tomogram's x and y (its z is 64), to keep a larger sample as crowded."""
    names = [o["name"] for o in OBJECTS if o["is_particle"]]
    pdb_ids = [o["pdb_id"].lower() for o in OBJECTS if o["is_particle"]]
    config = TomogramConfig(
        size_x_px=size_px,
        size_y_px=size_px,
        size_z_px=64,
        particles_per_class=per_class,
        unseen_particles_per_class=unseen_per_class,
        particle_gap_angstrom=40.0,
        tilt_step_deg=4.0,
    )
    work = root / "simulated"
    work.mkdir(parents=True)
    result = simulate_tomogram(
        maps(*pdb_ids), names, {names[-1]}, config, 0, seed, VOXEL, 32,
        *(work / f for f in ("tomogram.mrc", "truth.star", "locations.txt", "info.json")),
    )  # fmt: skip
    with mrcfile.open(work / "tomogram.mrc") as mrc:
        volume = np.asarray(mrc.data, dtype=np.float32)
    static, overlay = root / "portal", root / "overlay"
    overlay.mkdir(parents=True)
    folder = static / "ExperimentRuns" / "TS_1"
    write_tomogram(folder / f"VoxelSpacing{VOXEL:.3f}" / "wbp.zarr", volume, VOXEL)
    plan, truth = result.plan.sample, {}
    for index, name in enumerate(names):
        rows = plan.class_index == index
        transforms = np.tile(np.eye(4), (int(rows.sum()), 1, 1))
        transforms[:, :3, :3] = plan.rotations[rows]
        locations = plan.positions_px[rows] * VOXEL
        write_picks(folder / "Picks", "curator", "0", name, "TS_1", locations, transforms)
        truth[name] = (locations, transforms)
    path = root / "copick_config.json"
    body = {"config_type": "filesystem", "name": "simulated", "pickable_objects": OBJECTS,
            "overlay_root": f"local://{overlay}", "static_root": f"local://{static}"}  # fmt: skip
    path.write_text(json.dumps(body))
    return Project(path, static, overlay, ["TS_1"], {"TS_1": truth})
