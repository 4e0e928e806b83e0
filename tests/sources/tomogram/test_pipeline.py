"""A whole simulated tomogram: outputs, ground truth read back, picks on the particles."""

import json

import mrcfile
import numpy as np
import pytest
import starfile
from tomogram_fixtures import maps

from cryoavae import particles as P
from cryoavae.core.errors import InputError
from cryoavae.geometry.rotations import relion_angles_to_matrices
from cryoavae.geometry.volume_rotation import rotate_volumes
from cryoavae.geometry.wedge import missing_wedge_mask
from cryoavae.particles.picks import read_particle_list
from cryoavae.sources.extract import ExtractionConfig, extract_subtomograms
from cryoavae.sources.tomogram import TomogramConfig, simulate_tomogram

NAMES = ["1bxn", "1s3x"]
CLEAN = dict(shot_noise=False, ctf=False, radiation_damage=False)


def small(**overrides) -> TomogramConfig:
    settings = dict(
        size_x_px=128,
        size_y_px=112,
        size_z_px=64,
        particles_per_class=4,
        unseen_particles_per_class=3,
        particle_gap_angstrom=80.0,
    )
    return TomogramConfig(**{**settings, **overrides})


def simulate(folder, config, index=0, seed=5, names=NAMES, unseen=("1s3x",)):
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        k: folder / f
        for k, f in [
            ("tomogram", "tomogram.mrc"),
            ("star", "particles.star"),
            ("locations", "particle_locations.txt"),
            ("info", "tomogram.json"),
        ]
    }
    result = simulate_tomogram(
        maps(*names),
        names,
        set(unseen),
        config,
        index,
        seed,
        10.0,
        32,
        paths["tomogram"],
        paths["star"],
        paths["locations"],
        paths["info"],
    )
    return result, paths


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    return simulate(tmp_path_factory.mktemp("clean"), small(**CLEAN))


def test_outputs_hold_the_tomogram_and_its_ground_truth(clean):
    result, paths = clean
    with mrcfile.open(paths["tomogram"]) as mrc:
        assert mrc.data.shape == (64, 112, 128)  # (Z, Y, X)
        assert float(mrc.voxel_size.x) == pytest.approx(10.0)
        assert np.isfinite(mrc.data).all() and mrc.data.std() > 0
    table = starfile.read(paths["star"])
    assert len(table) == 7 and set(table[P.CLASS_NAME]) == set(NAMES)
    assert (table[P.CLASS_NAME] == "1bxn").sum() == 4  # seen: particles_per_class
    assert table["rlnTomoName"].unique().tolist() == ["tomogram_000"]
    centred = (table["rlnCoordinateX"] - 64) * 10.0
    assert np.allclose(table["rlnCenteredCoordinateXAngst"], centred, atol=0.02)
    info = json.loads(paths["info"].read_text())
    assert len(info["tilts"]) == 41 and info["particles_per_class"] == {"1bxn": 4, "1s3x": 3}
    assert result.central_slice.shape == (112, 128)


def test_star_and_shrec_lists_read_back_to_the_planned_poses(clean):
    result, paths = clean
    plan = result.plan.sample
    for path in (paths["star"], paths["locations"]):
        plist = read_particle_list(path, NAMES)
        assert np.allclose(plist.coords_xyz, plan.positions_px, atol=2e-3)
        assert list(plist.names) == [NAMES[c] for c in plan.class_index]
        matrices = relion_angles_to_matrices(plist.angles_deg)
        assert np.allclose(matrices, plan.rotations, atol=1e-3)  # the A of the particle


def test_a_seed_reproduces_a_tomogram_and_the_index_makes_another(tmp_path, clean):
    _, paths = clean
    again, again_paths = simulate(tmp_path / "again", small(**CLEAN))
    with mrcfile.open(again_paths["tomogram"]) as a, mrcfile.open(paths["tomogram"]) as b:
        assert np.array_equal(a.data, b.data)  # (the header's label holds the time)
    assert again_paths["star"].read_bytes() == paths["star"].read_bytes()
    other, _ = simulate(tmp_path / "other", small(**CLEAN), index=1)
    assert not np.array_equal(other.plan.sample.positions_px, again.plan.sample.positions_px)
    dose, _ = simulate(tmp_path / "dose", small(**{**CLEAN, "dose_e_per_a2": 50.0}))
    assert np.array_equal(dose.plan.sample.positions_px, again.plan.sample.positions_px)


def test_extraction_at_the_true_positions_matches_the_idealised_particle(clean, tmp_path):
    """A noise-free tomogram cut at the ground truth correlates >= 0.9 with the idealised
    simulator's particle of the same pose (rotated map, missing wedge of +-60 degrees)."""
    result, paths = clean
    extract_subtomograms(
        paths["tomogram"],
        paths["star"],
        NAMES,
        ["1s3x"],
        ExtractionConfig(box_size_px=32),
        seed=0,
        stack_path=tmp_path / "p.mrcs",
        star_path=tmp_path / "p.star",
    )
    boxes = np.asarray(P.open_stack(tmp_path / "p.mrcs", box_ndim=3))
    table = P.read_particle_table(tmp_path / "p.star")
    assert len(boxes) == len(result.plan.sample)
    plan = result.plan.sample
    shifts = plan.positions_px - np.rint(plan.positions_px)
    ideal = rotate_volumes(
        maps(*NAMES), plan.rotations, source_index=plan.class_index, shifts_px=shifts
    )
    wedge = missing_wedge_mask(32, 60.0)
    ideal = np.fft.irfftn(np.fft.rfftn(ideal, axes=(1, 2, 3)) * wedge, s=(32,) * 3, axes=(1, 2, 3))
    order = np.lexsort(plan.positions_px.T[::-1])
    picked = np.lexsort(table[["rlnCoordinateZ", "rlnCoordinateY", "rlnCoordinateX"]].to_numpy().T)
    for p, q in zip(order, picked, strict=True):
        r = np.corrcoef(boxes[q].ravel(), ideal[p].ravel())[0, 1]
        assert r >= 0.9, (NAMES[plan.class_index[p]], r)
    # the test can fail: a box one particle's radius off correlates far less
    off = np.roll(boxes[picked[0]], 6, axis=2)
    assert np.corrcoef(off.ravel(), ideal[order[0]].ravel())[0, 1] < 0.7


def test_small_proteins_carry_less_signal_at_a_fixed_dose(clean):
    """The noise is the tomogram's, the signal each particle's own: a 42 kDa protein's box
    holds several times less signal energy than a 258 kDa one's (idealised particles are all
    scaled to the same SNR instead)."""
    result, paths = clean
    with mrcfile.open(paths["tomogram"]) as mrc:
        volume = np.asarray(mrc.data)
    energy = {}
    for name in NAMES:
        rows = result.plan.sample.class_index == NAMES.index(name)
        centres = np.rint(result.plan.sample.positions_px[rows]).astype(int)
        boxes = [volume[z - 16 : z + 16, y - 16 : y + 16, x - 16 : x + 16] for x, y, z in centres]
        energy[name] = np.mean([np.var(b) for b in boxes])
    assert energy["1bxn"] > 3 * energy["1s3x"]


def test_maps_that_do_not_match_the_names_are_refused(tmp_path):
    with pytest.raises(InputError, match="one \\(d, d, d\\) map per class"):
        simulate_tomogram(
            maps("1bxn"),
            NAMES,
            set(),
            small(),
            0,
            0,
            10.0,
            32,
            *(tmp_path / f for f in ("t.mrc", "t.star", "t.txt", "t.json")),
        )
    assert not (tmp_path / "t.mrc").exists()
