"""Users' STAR files of subtomograms for the tests: RELION 5-style (optics and particles
blocks, one file per particle and ``index@stack.mrcs``) and Warp-style (one block, no optics,
one ``.mrc`` per particle, the voxel size in the headers), and noisy blobs to fill them with."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import starfile

from cryoavae import particles as P

BOX = 8


def write_volume(path: Path, volume: np.ndarray, voxel: float = 0.0) -> None:
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(volume.astype(np.float32))
        mrc.voxel_size = voxel


def relion_star(root: Path, n: int = 12, optics_voxel: float | None = 12.5, header_voxel=0.0):
    """A RELION 5-style STAR file: optics + particles blocks; the first half of the particles
    are one .mrc each, the rest ``index@stack.mrcs``; volume i is filled with the value i."""
    (root / "Subtomograms").mkdir(parents=True, exist_ok=True)
    rows, stack = [], []
    for i in range(n):
        volume = np.full((BOX, BOX, BOX), float(i))
        if i < n // 2:
            name = f"Subtomograms/p{i:03d}.mrc"
            write_volume(root / name, volume, header_voxel)
        else:
            stack.append(volume)
            name = f"{len(stack):06d}@Subtomograms/rest.mrcs"
        rows.append(
            {
                P.IMAGE: name,
                P.CLASS_NUMBER: 1 + i % 3,
                "rlnOpticsGroup": 1,
                "rlnAngleRot": 10.0 * i,
                "rlnAngleTilt": 90.0,
                "rlnAnglePsi": -5.0,
                "rlnDefocusU": 25000.0,
            }
        )
    with mrcfile.new(root / "Subtomograms" / "rest.mrcs", overwrite=True) as mrc:
        mrc.set_data(np.concatenate(stack).astype(np.float32))
        mrc.header.ispg, mrc.header.mz = 401, BOX
        mrc.voxel_size = header_voxel
    blocks = {"particles": pd.DataFrame(rows)}
    if optics_voxel is not None:
        optics = {"rlnOpticsGroup": [1], "rlnImagePixelSize": [optics_voxel]}
        blocks = {"optics": pd.DataFrame({**optics, "rlnImageSize": [BOX]}), **blocks}
    starfile.write(blocks, root / "particles.star")
    return root / "particles.star"


def warp_star(root: Path, volumes: np.ndarray, labels, column: str = "tmLabel", voxel=10.0):
    """A Warp-style STAR file: one unnamed block, no optics, one ``.mrc`` per particle under
    ``subtomo/`` with the voxel size in its header, the class as ``labels`` in ``column``."""
    (root / "subtomo").mkdir(parents=True, exist_ok=True)
    names = []
    for i, volume in enumerate(volumes):
        names.append(f"subtomo/TS_01_{i + 1:06d}_{voxel:.2f}A.mrc")
        write_volume(root / names[-1], volume, voxel)
    table = pd.DataFrame(
        {
            "rlnCoordinateX": np.arange(len(names)) * 10.0,
            "rlnCoordinateY": 50.0,
            "rlnCoordinateZ": 60.0,
            "rlnMicrographName": "TS_01.tomostar",
            P.IMAGE: names,
            column: list(labels),
        }
    )
    starfile.write(table, root / "particles.star")
    return root / "particles.star"


def blobs(n: int, box: int, ndim: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """``n`` noisy particles of three classes (a blob at a class-specific place); classes (n,)."""
    grid = np.indices((box,) * ndim) - box // 2
    places = [(-box // 4, 0, 0), (box // 4, 0, 0), (0, box // 4, 0)]
    classes = np.arange(n) % 3
    out = np.empty((n, *(box,) * ndim), dtype=np.float32)
    for i, c in enumerate(classes):
        offset = np.array(places[c][:ndim]).reshape(-1, *(1,) * ndim)
        out[i] = np.exp(-((grid - offset) ** 2).sum(0) / (box / 4)) + 0.2 * rng.normal(
            size=(box,) * ndim
        )
    return out, classes
