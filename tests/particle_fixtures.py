"""Tiny particle sets for the tests: a particle table of any length pointing into one stack, and
a 2-D, three-class set and a 3-D, two-class one written to disk for the training tests."""

from pathlib import Path

import numpy as np
import pandas as pd

from cryoavae import particles

BOX = 16


def make_table(n: int, stack: str) -> pd.DataFrame:
    """``n`` particles, images 1..n of ``stack``: classes 1bxn/3h84 alternating, the last one
    ``val``, the rest ``train``."""
    return pd.DataFrame(
        {
            particles.IMAGE: [particles.image_reference(i, stack) for i in range(n)],
            particles.CLASS_NUMBER: [1 + i % 2 for i in range(n)],
            "rlnAngleRot": np.linspace(0, 90, n),
            "rlnAngleTilt": np.linspace(0, 45, n),
            "rlnAnglePsi": np.linspace(-30, 30, n),
            particles.CLASS_NAME: ["1bxn" if i % 2 == 0 else "3h84" for i in range(n)],
            particles.SPLIT: ["train"] * (n - 1) + ["val"],
        }
    )


def write_particles(root: Path, per_class: int = 16, nan_unseen: bool = False) -> Path:
    """Classes a, b (seen) and c (unseen): one blob position each plus noise, 2-D ``BOX``^2.

    Every 4th seen particle is ``val``. With ``nan_unseen`` the unseen images are NaN, so any
    use of them in training shows up as a NaN loss.
    """
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:BOX, :BOX] - BOX // 2
    rows, images = [], []
    for number, (name, (cx, cy)) in enumerate(
        {"a": (-4, 0), "b": (4, 0), "c": (0, 4)}.items(), start=1
    ):
        for i in range(per_class):
            blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 6.0)
            image = blob + 0.2 * rng.standard_normal((BOX, BOX))
            split = "unseen" if name == "c" else ("val" if i % 4 == 0 else "train")
            if nan_unseen and split == "unseen":
                image[:] = np.nan
            rows.append(
                {
                    particles.IMAGE: particles.image_reference(len(images), "stack.mrcs"),
                    particles.CLASS_NUMBER: number,
                    "rlnAngleRot": 0.0,
                    "rlnAngleTilt": 0.0,
                    "rlnAnglePsi": float(rng.uniform(0, 360)),
                    particles.CLASS_NAME: name,
                    particles.SPLIT: split,
                }
            )
            images.append(image)
    root.mkdir(parents=True, exist_ok=True)
    particles.write_stack(root / "stack.mrcs", np.stack(images).astype(np.float32), 5.0)
    star = root / "particles.star"
    particles.write_particle_table(star, pd.DataFrame(rows))
    return star


def write_3d_particles(root: Path, box: int, defocus_angstrom=None) -> Path:
    """Two classes of an off-centre blob (a lopsided shape, so a turn changes it), 3-D ``box``^3,
    12 each, every 4th ``val``; ``defocus_angstrom`` (one value, or one per particle): the
    particles' ``rlnDefocusU`` (the images carry no CTF)."""
    rng = np.random.default_rng(2)
    z, y, x = np.mgrid[:box, :box, :box] - box // 2
    rows, images = [], []
    for number, (name, centre) in enumerate({"a": (2, 1, 0), "b": (-1, 0, 2)}.items(), start=1):
        for i in range(12):
            r2 = (x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2
            images.append(np.exp(-r2 / 3.0) + 0.2 * rng.standard_normal((box,) * 3))
            rows.append(
                {
                    particles.IMAGE: particles.image_reference(len(rows), "stack.mrcs"),
                    particles.CLASS_NUMBER: number,
                    particles.CLASS_NAME: name,
                    particles.SPLIT: "val" if i % 4 == 0 else "train",
                    "rlnAngleRot": 0.0,
                    "rlnAngleTilt": 0.0,
                    "rlnAnglePsi": 0.0,
                }
            )
    table = pd.DataFrame(rows)
    if defocus_angstrom is not None:
        table[particles.DEFOCUS] = np.broadcast_to(defocus_angstrom, len(table))
    root.mkdir(parents=True, exist_ok=True)
    particles.write_stack(root / "stack.mrcs", np.stack(images).astype(np.float32), 10.0)
    star = root / "particles.star"
    particles.write_particle_table(star, table)
    return star


def train_two_epochs(
    star: Path, out: Path, model, affinity: np.ndarray, **training
) -> pd.DataFrame:
    """Train ``model`` on the particles of ``star`` for two epochs of batches of 6 (seed 3, one
    thread, CPU) with ``training`` settings on top; the history table."""
    from cryoavae.train import TrainingConfig, train_model

    table = particles.read_particle_table(star)
    images = particles.ParticleImages(table, star, box_ndim=model.ndim)
    config = TrainingConfig(epochs=2, batch_size=6, device="cpu", **training)
    train_model(
        table,
        images,
        affinity,
        model,
        config,
        seed=3,
        checkpoint_path=out / "model.pt",
        history_path=out / "history.tsv",
        work_dir=out / "work",
        threads=1,
    )
    return pd.read_csv(out / "history.tsv", sep="\t")
