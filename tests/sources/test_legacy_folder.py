"""Converting the original Affinity-VAE folder layout into our stack + STAR table."""

from __future__ import annotations

import mrcfile
import numpy as np
import pandas as pd
import pytest

from cryoavae import particles as P
from cryoavae.affinity import read_affinity_csv
from cryoavae.core.errors import InputError
from cryoavae.sources.legacy_folder import SOURCE_FILE, convert_legacy_folder

AFFINITY = np.array(
    [
        [1.0, 0.5, -0.2, 0.1],
        [0.5, 1.0, 0.3, 0.0],
        [-0.2, 0.3, 1.0, 0.4],
        [0.1, 0.0, 0.4, 1.0],
    ]
)


def _write_affinity(path, names, matrix):
    lines = [",".join(names)] + [",".join(repr(float(v)) for v in row) for row in matrix]
    path.write_text("\n".join(lines) + "\n")


def _npy_folder(root, counts=None, shape=(8, 8)):
    """Files <class>_<i>_img.npy whose pixels all equal a unique code, so rows can be traced."""
    counts = counts or {"a": 10, "b": 10, "c": 3}
    root.mkdir(parents=True, exist_ok=True)
    codes = {}
    for k, (cls, n) in enumerate(counts.items()):
        for i in range(n):
            name = f"{cls}_{i}_img.npy"
            codes[name] = 100 * k + i
            np.save(root / name, np.full(shape, codes[name], dtype=np.float64))
    (root / "test").mkdir(exist_ok=True)
    for name, code in (("a_99_img.npy", 999), ("d_0_img.npy", 998)):
        np.save(root / "test" / name, np.full(shape, code, dtype=np.float32))
        codes[f"test/{name}"] = code
    (root / "classes.csv").write_text("b,a\n")
    _write_affinity(root / "affinity.csv", ["a", "x", "b", "c"], AFFINITY)
    return codes


def _convert(tmp_path, folder, seed=0, **kw):
    stack, star = tmp_path / "out" / "legacy.mrcs", tmp_path / "out" / "legacy.star"
    names, unseen = convert_legacy_folder(folder, stack, star, seed, 0.2, **kw)
    return names, unseen, stack, star


def test_npy_folder_converts_with_classes_splits_and_affinity(tmp_path):
    codes = _npy_folder(tmp_path / "data")
    aff_out = tmp_path / "out" / "affinity.csv"
    names, unseen, stack, star = _convert(tmp_path, tmp_path / "data", affinity_path=aff_out)
    assert names == ["b", "a", "c", "d"]  # classes.csv order, then unseen sorted
    assert unseen == ["c", "d"]
    table = P.read_particle_table(star)
    assert len(table) == 25
    images = P.ParticleImages(table, star, box_ndim=2).gather(np.arange(len(table)))
    expected = table[SOURCE_FILE].map(codes).to_numpy()
    assert np.array_equal(images[:, 3, 5], expected)  # each row holds its own file's pixels
    number = {n: i + 1 for i, n in enumerate(names)}
    assert all(table[P.CLASS_NUMBER] == table[P.CLASS_NAME].map(number))
    split = dict(zip(table[SOURCE_FILE], table[P.SPLIT], strict=True))
    assert split["test/a_99_img.npy"] == "val"  # held out by the original layout
    assert split["test/d_0_img.npy"] == "unseen"
    assert {split[f"c_{i}_img.npy"] for i in range(3)} == {"unseen"}
    for cls in ("a", "b"):
        top = [split[f"{cls}_{i}_img.npy"] for i in range(10)]
        assert top.count("val") == 2 and top.count("train") == 8
    assert table[P.ANGLES[0]].isna().all()
    # the affinity: our classes that the matrix has, in our order (x dropped, d absent)
    assert aff_out.read_text().splitlines()[0] == "b,a,c"
    aff_names = ["b", "a", "c"]
    aff = read_affinity_csv(aff_out, aff_names)
    full = dict(zip(["a", "x", "b", "c"], range(4), strict=True))
    idx = [full[n] for n in aff_names]
    assert np.allclose(aff, AFFINITY[np.ix_(idx, idx)])
    assert P.stack_voxel_size(stack) == pytest.approx(1.0)


def test_mrc_volumes_keep_voxel_size_and_seed_reproduces(tmp_path):
    folder = tmp_path / "vols"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for cls in ("1bxn", "3qm1"):
        for i in range(4):
            with mrcfile.new(folder / f"{cls}_{i}.mrc") as mrc:
                mrc.set_data(rng.standard_normal((6, 6, 6)).astype(np.float32))
                mrc.voxel_size = 10.0
    names, unseen, stack, star = _convert(tmp_path, folder, seed=5)
    assert names == ["1bxn", "3qm1"] and unseen == []  # no classes.csv: all classes train
    table = P.read_particle_table(star)
    vols = P.ParticleImages(table, star, box_ndim=3).gather(np.arange(len(table)))
    assert vols.shape == (8, 6, 6, 6)
    with mrcfile.open(folder / table[SOURCE_FILE].iloc[5]) as mrc:
        assert np.array_equal(vols[5], mrc.data)
    assert P.stack_voxel_size(stack) == pytest.approx(10.0)
    assert mrcfile.validate(str(stack))
    first = stack.read_bytes()
    _convert(tmp_path, folder, seed=5)
    assert stack.read_bytes() == first
    pd.testing.assert_frame_equal(P.read_particle_table(star), table)


def _expect(tmp_path, folder, match, **kw):
    with pytest.raises(InputError, match=match):
        _convert(tmp_path, folder, **kw)


def test_mixed_box_sizes_refused(tmp_path):
    folder = tmp_path / "data"
    _npy_folder(folder)
    np.save(folder / "b_50_img.npy", np.zeros((9, 9)))
    _expect(tmp_path, folder, r"b_50_img.npy: shape \(9, 9\) differs from \(8, 8\)")


@pytest.mark.parametrize("shape", [(0, 0), (0,), (1, 0, 0), (0, 8, 8), (8, 0), (1, 8)])
def test_empty_arrays_are_refused_not_converted(tmp_path, shape):
    """A folder whose .npy arrays are empty (shape (0, 0), or a line) is no particle set: one
    line naming the first file and the shape expected, and nothing written."""
    folder = tmp_path / "data"
    _npy_folder(folder, shape=shape)
    with pytest.raises(InputError) as info:
        _convert(tmp_path, folder)
    message = str(info.value)
    assert message.startswith(f"{folder / 'a_0_img.npy'}: holds a float64 array of shape")
    assert "expected a 2-D image or a 3-D volume" in message and "at least 2 pixels" in message
    assert not (tmp_path / "out").exists()


def test_the_command_line_refuses_an_empty_folder_in_one_line(tmp_path, capsys):
    from cryoavae.sources.legacy_folder import main

    _npy_folder(tmp_path / "data", shape=(0, 0))
    with pytest.raises(SystemExit) as info:
        main([str(tmp_path / "data"), str(tmp_path / "out")])
    assert info.value.code == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "a_0_img.npy: holds a float64 array of shape (0, 0)" in errors[0]
    assert not (tmp_path / "out").exists()


def test_no_files_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "classes.csv").write_text("a\n")
    _expect(tmp_path, tmp_path / "empty", "no particle files")


def test_classes_without_files_are_left_out_with_a_warning(tmp_path, caplog):
    """The reference code trains on a classes.csv naming a class with no files; so do we."""
    folder = tmp_path / "data"
    _npy_folder(folder)
    (folder / "classes.csv").write_text("a,B\n")
    names, unseen, _, star = _convert(tmp_path, folder)
    assert names == ["a", "b", "c", "d"] and unseen == ["b", "c", "d"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("classes ['B'] have no <class>_* files" in w for w in warnings), warnings
    table = P.read_particle_table(star)
    assert set(table.loc[table[P.CLASS_NAME] == "b", P.SPLIT]) == {"unseen"}
    (folder / "classes.csv").write_text("B\n")
    _expect(tmp_path, folder, "none of its classes has files")


def test_class_names_not_matching_refused(tmp_path):
    folder = tmp_path / "data"
    _npy_folder(folder)
    (folder / "classes.csv").write_text("a,b\n")
    _write_affinity(folder / "affinity.csv", ["a", "x", "y", "c"], AFFINITY)
    _expect(tmp_path, folder, r"lacks training classes \['b'\]")


def test_bad_files_and_matrices_refused(tmp_path):
    folder = tmp_path / "data"
    _npy_folder(folder)
    bad = AFFINITY.copy()
    bad[0, 1] = 0.9
    _write_affinity(folder / "affinity.csv", ["a", "x", "b", "c"], bad * 2)
    _expect(tmp_path, folder, "outside")
    _write_affinity(folder / "affinity.csv", ["a", "x", "b"], AFFINITY[:3])
    _expect(tmp_path, folder, "is not square")
    _write_affinity(folder / "affinity.csv", ["a", "x", "b", "c"], AFFINITY)
    np.save(folder / "noprefix.npy", np.zeros((8, 8)))
    _expect(tmp_path, folder, "noprefix.npy: file name has no class prefix")
    (folder / "noprefix.npy").unlink()
    _expect(tmp_path, folder, "voxel_size_angstrom", voxel_size_angstrom=-1.0)


def test_command_line_converts_a_folder(tmp_path, capsys):
    from cryoavae.sources.legacy_folder import main

    _npy_folder(tmp_path / "data")
    assert main([str(tmp_path / "data"), str(tmp_path / "out"), "--seed", "3"]) == 0
    assert "c (unseen)" in capsys.readouterr().out
    table = P.read_particle_table(tmp_path / "out" / "particles.star")
    assert set(table[P.CLASS_NAME]) == {"a", "b", "c", "d"}
    assert read_affinity_csv(tmp_path / "out" / "affinity.csv", ["b", "a", "c"]).shape == (3, 3)
    with pytest.raises(SystemExit):
        main([str(tmp_path / "missing"), str(tmp_path / "out2")])
    assert not (tmp_path / "out2").exists()


def test_an_asymmetric_matrix_is_symmetrised_with_a_warning(tmp_path, caplog):
    folder = tmp_path / "data"
    _npy_folder(folder)
    bad = AFFINITY.copy()
    bad[0, 2] = 0.3  # a-b: 0.3 one way, -0.2 the other
    _write_affinity(folder / "affinity.csv", ["a", "x", "b", "c"], bad)
    out = tmp_path / "out" / "affinity.csv"
    names, _, _, _ = _convert(tmp_path, folder, affinity_path=out)
    warning = [r.getMessage() for r in caplog.records if "not symmetric" in r.getMessage()]
    assert warning and "largest asymmetry 0.5, between a and b" in warning[0]
    prior = read_affinity_csv(out, [n for n in names if n != "d"])
    assert prior[names.index("a"), names.index("b")] == pytest.approx(0.05)
    np.testing.assert_allclose(prior, prior.T)


def test_mrcs_float16_volumes_with_voxel_size_zero(tmp_path):
    """The reference code's test data: .mrcs 64^3 volumes, header voxel size 0, PDB-ID classes."""
    folder = tmp_path / "data"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for cls in ("1b23", "5mrc"):
        for i in range(3):
            with mrcfile.new(folder / f"{cls}_{i}.mrcs") as mrc:
                mrc.set_data(rng.standard_normal((64, 64, 64)).astype(np.float16))
                mrc.voxel_size = 0.0
    names, unseen, stack, star = _convert(tmp_path, folder)
    assert names == ["1b23", "5mrc"] and unseen == []
    volumes = P.open_stack(stack)
    assert volumes.shape == (6, 64, 64, 64) and volumes.dtype == np.float32
