"""The 2-D character set: rendering, recorded rotations, reproducibility, glyph affinity."""

from __future__ import annotations

import mrcfile
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from cryoavae import particles as P
from cryoavae.core.errors import InputError
from cryoavae.sources.characters import (
    CharacterConfig,
    generate_characters,
    glyph_affinity,
    render_glyphs,
    rotate_images,
)

SMALL = dict(particles_per_class=12, unseen_particles_per_class=5)


def _corr(a, b):
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def _generate(tmp_path, seed=0, **kw):
    cfg = CharacterConfig(**{**SMALL, **kw})
    stack, star = tmp_path / "chars.mrcs", tmp_path / "chars.star"
    names = generate_characters(cfg, seed, stack, star)
    table = P.read_particle_table(star)
    images = P.ParticleImages(table, star, box_ndim=2).gather(np.arange(len(table)))
    return cfg, names, table, images, stack, star


def test_glyphs_are_centred_by_mass_and_fit_the_circle():
    cfg = CharacterConfig()
    glyphs = render_glyphs(cfg)
    assert glyphs.shape == (10, 32, 32)
    coms = np.array([ndimage.center_of_mass(g) for g in glyphs])
    assert np.abs(coms - 16).max() < 0.1  # pixel 32 // 2, the box centre of every particle
    # auto font size: no ink outside the circle inscribed about it (rotations don't clip)
    yy, xx = np.mgrid[:32, :32] - 16
    outside = np.hypot(yy, xx) > 15.5
    assert glyphs[:, outside].max() < 0.02


def test_even_images_turn_about_the_box_centre_pixel():
    img = np.zeros((1, 8, 8), np.float32)
    img[0, 4, 4] = 1.0  # pixel 8 // 2: stays put under any turn
    img[0, 4, 6] = 0.5  # two right of it: a quarter turn takes it two above
    turned = rotate_images(img, [90.0])[0]
    assert turned[4, 4] == pytest.approx(1.0, abs=1e-5)
    assert turned[2, 4] == pytest.approx(0.5, abs=1e-5)


def test_rotation_is_counter_clockwise_as_displayed():
    img = np.zeros((1, 9, 9), np.float32)
    img[0, 4, 7] = 1.0  # right of the centre (row 4, col 4)
    up = rotate_images(img, [90.0])[0]
    assert np.unravel_index(up.argmax(), up.shape) == (1, 4)  # above the centre (row 0 on top)
    left = rotate_images(img, [180.0])[0]
    assert np.unravel_index(left.argmax(), left.shape) == (4, 1)


def test_particle_rotated_back_matches_upright_glyph(tmp_path):
    cfg, names, table, images, stack, _ = _generate(tmp_path, rotation_range_deg=180.0)
    glyphs = render_glyphs(cfg)
    psi = table["rlnAnglePsi"].to_numpy()
    assert np.abs(psi).max() <= 180.0 and psi.std() > 50  # spread over the whole range
    back = rotate_images(images, -psi)
    corr = [_corr(back[i], glyphs[k - 1]) for i, k in enumerate(table[P.CLASS_NUMBER])]
    assert min(corr) >= 0.95
    # and the recorded angle is really used: ignoring it loses the match for large angles
    big = np.abs(psi) > 60
    wrong = [_corr(images[i], glyphs[k - 1]) for i, k in enumerate(table[P.CLASS_NUMBER])]
    assert np.median(np.array(wrong)[big]) < 0.8
    assert mrcfile.validate(str(stack))
    assert np.allclose(images.mean(axis=(1, 2)), 0, atol=1e-5)
    assert np.allclose(images.std(axis=(1, 2)), 1, atol=1e-4)


def test_class_order_splits_and_columns(tmp_path):
    cfg, names, table, _, _, _ = _generate(tmp_path, val_fraction=0.25)
    assert names == ["a", "b", "d", "e", "i", "j", "z", "2", "u", "v"]
    assert list(table[P.CLASS_NAME].unique()) == names  # "2" stays a string
    expected_number = {n: i + 1 for i, n in enumerate(names)}
    assert all(table[P.CLASS_NUMBER] == table[P.CLASS_NAME].map(expected_number))
    seen = table[table[P.CLASS_NAME] != "v"]
    assert set(seen[P.SPLIT]) == {"train", "val", "test"}
    assert all(seen.groupby(P.CLASS_NAME)[P.SPLIT].apply(lambda s: (s == "val").sum()) == 3)
    assert set(table.loc[table[P.CLASS_NAME] == "v", P.SPLIT]) == {"unseen"}
    assert (table[P.CLASS_NAME] == "v").sum() == 5
    assert (table["rlnAngleRot"] == 0).all() and (table["rlnAngleTilt"] == 0).all()
    assert np.isinf(table[P.SNR]).all()


def test_fixed_seed_reproduces_bytes(tmp_path):
    kw = dict(noise_std=0.5, rotation_range_deg=90.0)
    *_, stack, star = _generate(tmp_path / "one", seed=3, **kw)
    *_, stack2, star2 = _generate(tmp_path / "two", seed=3, **kw)
    assert stack.read_bytes() == stack2.read_bytes()
    # the STAR header carries a time stamp: compare its contents
    pd.testing.assert_frame_equal(P.read_particle_table(star), P.read_particle_table(star2))
    *_, stack3, _ = _generate(tmp_path / "three", seed=4, **kw)
    assert stack.read_bytes() != stack3.read_bytes()


def test_noise_gives_the_recorded_snr(tmp_path):
    noise_std = 0.5
    cfg, _, table, images, _, _ = _generate(tmp_path, noise_std=noise_std)
    assert np.allclose(table[P.SNR], 1 / noise_std**2)
    clean = rotate_images(render_glyphs(cfg)[table[P.CLASS_NUMBER] - 1], table["rlnAnglePsi"])
    # correlation of signal with (signal + noise) at SNR s is sqrt(s / (1 + s))
    corr = np.median([_corr(a, b) for a, b in zip(images, clean, strict=True)])
    assert corr == pytest.approx(np.sqrt(4 / 5), abs=0.03)


def test_glyph_affinity_symmetric_unit_diagonal_rotation_maximised():
    names, a = glyph_affinity(CharacterConfig(), n_angles=72)
    assert names == ["a", "b", "d", "e", "i", "j", "z", "2", "u", "v"]
    assert a.shape == (10, 10)
    assert np.array_equal(a, a.T)
    assert np.array_equal(np.diag(a), np.ones(10))
    assert a.min() >= -1 and a.max() <= 1
    # 'n' is 'u' turned half a turn in this font: rotation-maximised similarity sees it
    names, b = glyph_affinity(CharacterConfig(seen=("u", "n", "z"), unseen=()), n_angles=72)
    assert b[0, 1] > 0.9
    assert b[0, 1] > b[0, 2] + 0.2


@pytest.mark.parametrize(
    ("kw", "key"),
    [
        (dict(seen=()), "seen"),
        (dict(seen=("a", "b"), unseen=("a",)), "seen \\+ unseen"),
        (dict(image_size_px=4), "image_size_px"),
        (dict(rotation_range_deg=270.0), "rotation_range_deg"),
        (dict(noise_std=-1.0), "noise_std"),
        (dict(val_fraction=1.0), "val_fraction"),
    ],
)
def test_bad_config_is_refused(kw, key):
    with pytest.raises(InputError, match=key):
        CharacterConfig(**kw)
