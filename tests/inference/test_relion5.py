"""particles_relion5.star read back as RELION 5 reads it: a simulated particle's true rotation
and position come back when the model found them exactly, composed in RELION 5's order."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile
from scipy.spatial.transform import Rotation

from cryoavae import particles as P
from cryoavae.core.errors import InputError
from cryoavae.geometry.rotations import matrices_to_relion_angles, random_rotations
from cryoavae.inference.annotate import annotate_particles
from cryoavae.inference.novelty import fit_novelty
from cryoavae.inference.relion5 import CLASSES_BLOCK, SUBTOMOGRAM_ANGLES, write_relion5_particles
from cryoavae.particles.positions import CENTRED
from cryoavae.sources.tomogram.truth import truth_table, write_truth_star

SIZE_XYZ = (64, 48, 31)
VOXEL = 8.0
CLASSES = ["a", "b"]
ORIGINS = ["rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst"]
OPTICS = {"tilt_series_pixel_size_angstrom": VOXEL, "voltage_kv": 300.0, "cs_mm": 2.7}


def relion_matrices(angles) -> np.ndarray:
    """RELION's Euler_angles2matrix, independently of cryoavae: (Rz(rot) Ry(tilt) Rz(psi))^T."""
    matrices = Rotation.from_euler("ZYZ", np.asarray(angles, float), degrees=True).as_matrix()
    return matrices.transpose(0, 2, 1)


def relion5_pose(particles: pd.DataFrame, pixel: float):
    """What RELION 5 makes of each row: the rotation ``A_sub @ A_ang`` (ParticleSet::
    getMatrix3x3) and the position ``centred / pixel + size / 2 - A_sub @ origin / pixel``
    (ParticleSet::getPosition) in pixels; also ``A_ang @ A_sub``, the wrong order."""
    n = len(particles)
    a_sub = np.broadcast_to(np.eye(3), (n, 3, 3))
    if set(SUBTOMOGRAM_ANGLES) <= set(particles):
        a_sub = relion_matrices(particles[list(SUBTOMOGRAM_ANGLES)])
    a_ang = relion_matrices(particles[list(P.ANGLES)])
    origin = particles[ORIGINS].to_numpy(float) if ORIGINS[0] in particles else np.zeros((n, 3))
    shift = np.einsum("nij,nj->ni", a_sub, origin) / pixel
    position = particles[list(CENTRED)].to_numpy(float) / pixel + np.array(SIZE_XYZ) / 2 - shift
    return a_sub @ a_ang, position, a_ang @ a_sub


def geodesic_deg(a, b):
    cos = (np.einsum("nij,nij->n", a, b) - 1) / 2
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


@pytest.fixture
def truth(tmp_path):
    """Six simulated particles as the tomogram simulator writes its ground truth."""
    rng = np.random.default_rng(3)
    positions = rng.integers(8, 24, (6, 3)).astype(float)
    table = truth_table("TS_01", CLASSES, np.arange(6) % 2, positions, random_rotations(6, rng),
                        SIZE_XYZ, VOXEL)  # fmt: skip
    write_truth_star(tmp_path / "truth.star", table)
    return starfile.read(tmp_path / "truth.star"), tmp_path / "truth.star"


def latents(truth: pd.DataFrame, angles=None, shifts_angstrom=None) -> pd.DataFrame:
    """A model's latents for the particles: classes apart in mu, and (given) orientations and
    the shifts it found, in the box it saw."""
    n = len(truth)
    table = pd.DataFrame(
        {
            "class_name": truth[P.CLASS_NAME].to_numpy(),
            "split": "train",
            "mu_0": np.where(truth[P.CLASS_NAME] == "a", 1.0, -1.0),
            "mu_1": np.linspace(-0.1, 0.1, n),
        }
    )
    if angles is not None:
        table[["inferred_rot", "inferred_tilt", "inferred_psi"]] = angles
    if shifts_angstrom is not None:
        names = [f"inferred_shift_{a}_angstrom" for a in "xyz"]
        table[names] = shifts_angstrom
    return table


def own_particles(tmp_path: Path, truth, picks_xyz, box_centres_xyz=None) -> Path:
    """Particles as our extraction writes them: the pick list's (true) angles, picks, positions
    (and, given, the voxels the boxes were centred on)."""
    table, list_path = truth
    centres = {}
    if box_centres_xyz is not None:
        centres = {f"cryoavaeBoxCentre{a}Angst": box_centres_xyz[:, i] * VOXEL for i, a in
                   enumerate("XYZ")}  # fmt: skip
    own = P.particle_table(
        "shard_000.mrcs",
        table[P.CLASS_NUMBER].to_numpy(),
        table[P.CLASS_NAME].to_numpy(),
        np.full(len(table), "train"),
        angles_deg=table[list(P.ANGLES)].to_numpy(),
        rlnCoordinateX=picks_xyz[:, 0],
        rlnCoordinateY=picks_xyz[:, 1],
        rlnCoordinateZ=picks_xyz[:, 2],
        **P.positions_in(
            P.tomogram_name("tomogram.mrc", list_path), picks_xyz, SIZE_XYZ[::-1], VOXEL
        ),
        **centres,
    )
    P.write_particle_table(tmp_path / "particles.star", own)
    return tmp_path / "particles.star"


def write_and_read(
    tmp_path, source: Path, model: pd.DataFrame, optics=OPTICS, novelty=None
) -> dict:
    annotate_particles(source, model, model, CLASSES, tmp_path / "annotated.star", novelty=novelty)
    write_relion5_particles(tmp_path / "annotated.star", CLASSES, tmp_path / "r5.star", optics)
    return starfile.read(tmp_path / "r5.star", always_dict=True)


def test_our_particles_come_back_at_their_true_place_and_rotation(tmp_path, truth):
    table, _ = truth
    true_xyz = table[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy()
    shift = np.random.default_rng(4).integers(-2, 3, (len(table), 3)).astype(float)
    picks = true_xyz - shift  # the box is cut off the particle; the model finds it at +shift
    true_angles = table[list(P.ANGLES)].to_numpy()
    model = latents(table, angles=true_angles, shifts_angstrom=shift * VOXEL)
    blocks = write_and_read(tmp_path, own_particles(tmp_path, truth, picks), model)
    assert list(blocks) == ["general", "optics", "particles", CLASSES_BLOCK]
    assert blocks["general"]["rlnTomoSubTomosAre2DStacks"] == 0
    optics, particles = blocks["optics"], blocks["particles"]
    assert optics["rlnOpticsGroupName"].tolist() == ["TS_01"]
    assert optics[["rlnTomoTiltSeriesPixelSize", "rlnVoltage"]].iloc[0].tolist() == [8.0, 300.0]
    assert (particles["rlnOpticsGroup"] == 1).all() and (particles["rlnTomoName"] == "TS_01").all()
    assert (particles[list(SUBTOMOGRAM_ANGLES)] == 0).all().all()
    rotation, position, _ = relion5_pose(particles, optics["rlnTomoTiltSeriesPixelSize"][0])
    assert geodesic_deg(rotation, relion_matrices(true_angles)).max() < 0.01
    np.testing.assert_allclose(position, true_xyz, atol=1e-3)
    # Warp 2 reads voxels and subtracts the origin in them: the same place
    warp = particles[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy()
    warp = warp - particles[ORIGINS].to_numpy() / particles[["rlnPixelSize"]].to_numpy()
    np.testing.assert_allclose(warp, true_xyz, atol=1e-3)
    assert (particles["rlnMicrographName"] == "TS_01.tomostar").all()
    assert particles[P.CLASS_NUMBER].tolist() == table[P.CLASS_NUMBER].tolist()
    assert {"cryoavaeNovelty", "cryoavaePredictedClass"} <= set(particles)
    assert not {P.IMAGE, P.CLASS_NAME, P.SHARD, "cryoavaeAngleRot"} & set(particles)
    classes = blocks[CLASSES_BLOCK]
    assert classes[P.CLASS_NUMBER].tolist() == [1, 2] and classes[P.CLASS_NAME].tolist() == CLASSES


def test_your_boxes_made_in_a_frame_compose_with_the_models_angles_in_relions_order(
    tmp_path, truth
):
    table, _ = truth
    n, rng = len(table), np.random.default_rng(5)
    true_xyz = table[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy()
    a_true = relion_matrices(table[list(P.ANGLES)])
    a_sub = random_rotations(n, rng)  # the frame RELION 5 made each box in
    s_box = rng.uniform(-2, 2, (n, 3))  # where the particle sits in its box (box axes, voxels)
    picks = true_xyz - np.einsum("nij,nj->ni", a_sub, s_box)
    general = {"rlnTomoSubTomosAre2DStacks": 1}
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnTomoTiltSeriesPixelSize": [VOXEL]})
    user = pd.DataFrame({"rlnTomoName": "TS_01", P.IMAGE: [f"Extract/p{i}.mrcs" for i in range(n)]})
    user[list(CENTRED)] = (picks - np.array(SIZE_XYZ) / 2) * VOXEL
    user[list(SUBTOMOGRAM_ANGLES)] = matrices_to_relion_angles(a_sub)
    user[list(P.ANGLES)] = 10.0  # an earlier refinement's, against another reference
    user[["rlnAngleTiltPrior", *ORIGINS, P.CLASS_NUMBER, "rlnOpticsGroup"]] = [90.0, 3, 3, 3, 7, 1]
    source = tmp_path / "yours.star"
    starfile.write({"general": general, "optics": optics, "particles": user}, source)
    seen = np.einsum("nji,njk->nik", a_sub, a_true)  # what a perfect model sees in each box
    model = latents(table, matrices_to_relion_angles(seen), shifts_angstrom=s_box * VOXEL)
    blocks = write_and_read(tmp_path, source, model, optics=None)
    assert list(blocks) == ["general", "optics", "particles", CLASSES_BLOCK]
    assert blocks["general"] == general
    pd.testing.assert_frame_equal(blocks["optics"], optics)
    particles = blocks["particles"]
    assert particles[P.IMAGE].tolist() == user[P.IMAGE].tolist()
    np.testing.assert_allclose(
        particles[list(SUBTOMOGRAM_ANGLES)], user[list(SUBTOMOGRAM_ANGLES)], atol=1e-5
    )
    assert "rlnAngleTiltPrior" not in particles  # it held the replaced angles
    assert particles[P.CLASS_NUMBER].tolist() == table[P.CLASS_NUMBER].tolist()
    rotation, position, wrong_order = relion5_pose(particles, VOXEL)
    assert geodesic_deg(rotation, a_true).max() < 0.01
    assert geodesic_deg(wrong_order, a_true).min() > 1.0  # the test tells the orders apart
    np.testing.assert_allclose(position, true_xyz, atol=1e-3)
    added = position + 2 * np.einsum("nij,nj->ni", a_sub, s_box)  # an origin added, not taken
    assert np.abs(added - true_xyz).max() > 0.5


def test_without_the_models_orientation_ours_have_no_angles_and_yours_keep_theirs(
    tmp_path, truth, caplog
):
    table, _ = truth
    picks = table[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy()
    with caplog.at_level(logging.INFO, logger="cryoavae.inference.relion5"):
        source = own_particles(tmp_path, truth, picks)
        blocks = write_and_read(tmp_path, source, latents(table), optics=None)
    # the simulator's true angles are no result of the model's
    assert list(blocks) == ["general", "particles", CLASSES_BLOCK]  # optics: your tomograms'
    assert not {*P.ANGLES, *ORIGINS, "rlnOpticsGroup"} & set(blocks["particles"])
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "the particles have no angles" in messages and "tomograms.star" in messages
    user = pd.DataFrame({P.IMAGE: ["1@s.mrcs"] * len(table), "rlnAngleRot": 12.5})
    starfile.write({"particles": user}, tmp_path / "yours.star")
    particles = write_and_read(tmp_path, tmp_path / "yours.star", latents(table))["particles"]
    assert (particles["rlnAngleRot"] == 12.5).all()
    assert "your own angles are kept" in caplog.text and "no tomogram positions" in caplog.text


def test_particles_of_ours_without_tomogram_positions_are_refused(tmp_path, truth):
    table, _ = truth
    own = P.particle_table("s.mrcs", table[P.CLASS_NUMBER], table[P.CLASS_NAME], "train")
    P.write_particle_table(tmp_path / "particles.star", own)
    model = latents(table)
    annotate_particles(tmp_path / "particles.star", model, model, CLASSES, tmp_path / "an.star")
    with pytest.raises(InputError, match="no tomogram positions .no rlnTomoName"):
        write_relion5_particles(tmp_path / "an.star", CLASSES, tmp_path / "r5.star")
    assert not (tmp_path / "r5.star").exists()
    with pytest.raises(InputError, match="cryoavaePredictedClassNumber"):
        write_relion5_particles(tmp_path / "particles.star", CLASSES, tmp_path / "r5.star")


def test_a_pick_between_voxels_lands_on_its_particle_through_the_box_it_was_cut_in(tmp_path, truth):
    """A box sits on the voxel nearest its pick and the model measures the shift in that box:
    the origin written must carry the pick's distance from the box centre, or RELION 5 places
    the particle up to half a voxel off (shown by leaving the box centres out)."""
    table, _ = truth
    true_xyz = table[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy()
    picks = true_xyz + np.random.default_rng(8).uniform(-1.4, 1.4, true_xyz.shape)
    centres = np.rint(picks)  # where extraction centred each box
    model = latents(table, angles=table[list(P.ANGLES)].to_numpy(),
                    shifts_angstrom=(true_xyz - centres) * VOXEL)  # fmt: skip
    placed = []
    for given in (centres, None):
        folder = tmp_path / ("centres" if given is not None else "none")
        folder.mkdir()
        blocks = write_and_read(folder, own_particles(folder, truth, picks, given), model)
        optics, particles = blocks["optics"], blocks["particles"]
        placed.append(relion5_pose(particles, optics["rlnTomoTiltSeriesPixelSize"][0])[1])
    np.testing.assert_allclose(placed[0], true_xyz, atol=1e-3)
    assert np.abs(placed[1] - true_xyz).max() > 0.3  # without them: off by the pick's offset


@pytest.mark.parametrize("ours", [True, False])
def test_particles_flagged_novel_are_left_out_and_counted(tmp_path, truth, caplog, ours):
    """The particles the study's novelty model flags (here the two of highest score) have no
    angles in the annotation and no place in a particle set RELION refines: the others are all
    there, in their order, with their angles; the log says how many were left out."""
    table, _ = truth
    true_xyz = table[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy()
    model = latents(table, angles=table[list(P.ANGLES)].to_numpy())
    model["mu_1"] = [0.0, 0.0, 0.0, 0.0, 3.0, -3.0]  # the last two far from their classes
    fitted = fit_novelty(model, CLASSES)
    scores = fitted.score_of(model[["mu_0", "mu_1"]].to_numpy())
    novelty = dataclasses.replace(fitted, threshold=float(np.sort(scores)[3]))
    if ours:
        source = own_particles(tmp_path, truth, true_xyz)
    else:
        user = pd.DataFrame({P.IMAGE: [f"{i + 1}@s.mrcs" for i in range(6)], "rlnAngleRot": 1.0})
        starfile.write({"particles": user}, source := tmp_path / "yours.star")
    with caplog.at_level(logging.INFO, logger="cryoavae.inference.relion5"):
        blocks = write_and_read(tmp_path, source, model, novelty=novelty)
    annotated = starfile.read(tmp_path / "annotated.star")
    novel = annotated["cryoavaeIsNovel"].to_numpy() == 1
    np.testing.assert_array_equal(novel, [False] * 4 + [True] * 2)
    particles = blocks["particles"]
    assert len(particles) == 4 and (particles["cryoavaeIsNovel"] == 0).all()
    np.testing.assert_allclose(particles[list(P.ANGLES)], table[list(P.ANGLES)][~novel], atol=1e-4)
    assert particles[list(P.ANGLES)].notna().all().all()
    if not ours:
        assert particles[P.IMAGE].tolist() == [f"{i + 1}@s.mrcs" for i in range(4)]
    assert "2 particles flagged novel (cryoavaeIsNovel 1) left out" in caplog.text
