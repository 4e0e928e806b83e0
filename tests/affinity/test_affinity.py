"""The affinity prior: SOAP on tiny C-alpha clouds, map cross-correlation on synthetic blobs, the
spread/projection that makes a valid cosine-similarity matrix, and compute_affinity's sources (the
user-CSV contract is tested in test_io.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from cryoavae import affinity as af
from cryoavae.core.errors import InputError
from cryoavae.report.affinity_figures import cluster_order, plot_affinity_heatmap
from cryoavae.structures import AtomArrays

SMALL = {"r_cut_angstrom": 12.0, "n_max": 3, "l_max": 3, "sigma_angstrom": 3.0}
SMALL_SOAP = af.SoapConfig(**SMALL)


def _cloud(kind: str, seed: int, n: int = 150) -> AtomArrays:
    """C-alpha-like pseudo-atoms (Å) filling a ball, a rod or a disk."""
    rng = np.random.default_rng(seed)
    if kind == "ball":
        p = rng.normal(size=(n, 3))
        p *= 15 * rng.random(n)[:, None] ** (1 / 3) / np.linalg.norm(p, axis=1, keepdims=True)
    elif kind == "rod":
        p = np.c_[rng.uniform(-30, 30, n), rng.normal(0, 2, (n, 2))]
    else:
        r, t = 20 * np.sqrt(rng.random(n)), rng.uniform(0, 2 * np.pi, n)
        p = np.c_[r * np.cos(t), r * np.sin(t), rng.normal(0, 1, n)]
    return AtomArrays(p, np.full(n, 6), np.full(n, "C"))


@pytest.fixture(scope="module")
def clouds() -> list[AtomArrays]:
    return [
        _cloud("ball", 1),
        _cloud("rod", 2),
        _cloud("disk", 3),
        _cloud("ball", 4),
        _cloud("rod", 5),
    ]


def _ellipsoid(d: int, axes_px, centre_px) -> np.ndarray:
    """Gaussian ellipsoid (d, d, d) indexed [z, y, x]; axes and centre given as (x, y, z)."""
    z, y, x = np.indices((d, d, d), dtype=np.float64)
    q = sum(((c - m) / a) ** 2 for c, m, a in zip((x, y, z), centre_px, axes_px, strict=True))
    return np.exp(-q / 2)


def _assert_valid_prior(a: np.ndarray) -> None:
    np.testing.assert_array_equal(a, a.T)
    np.testing.assert_array_equal(np.diag(a), 1.0)
    assert np.all(a <= 1.0) and np.all(a >= -1.0)
    assert np.linalg.eigvalsh(a).min() > -1e-10


# --- SOAP ------------------------------------------------------------------------------------

# The previous default (averaged C-alpha SOAP, standardised, linear spread), the default (one
# centroid environment, amplitudes, power calibration) and local bead environments by REMatch.
OLD_SOAP = af.SoapConfig(
    centres="atoms",
    features="power",
    standardize=True,
    calibration="linear",
    angular_weight=1.0,
    **SMALL,
)
BEADS_SOAP = af.SoapConfig(
    centres="beads", kernel="rematch", atoms_per_bead=5, sigma_angstrom=6.0, n_max=6, l_max=4
)
CONFIGS = {"default": af.SoapConfig(), "old": OLD_SOAP, "beads": BEADS_SOAP}


def _soap_prior(structures, config):
    raw = af.soap_similarity(structures, config)
    calibrated, _ = af.calibrate_similarity(raw, config.calibration)
    return raw, af.build_affinity(calibrated, spread=False)[0]


def _moved(s: AtomArrays, seed: int, jitter_angstrom: float = 0.0) -> AtomArrays:
    """A rotated, translated (and optionally jittered) copy of s."""
    rng = np.random.default_rng(seed)
    rotation = Rotation.random(random_state=seed).as_matrix()
    p = s.positions @ rotation.T + rng.uniform(-100, 100, 3)
    p = p + rng.normal(0, jitter_angstrom / np.sqrt(3), p.shape)  # rms displacement = jitter
    return AtomArrays(p, s.atomic_numbers, s.elements)


def _calpha(p) -> AtomArrays:
    p = np.asarray(p, dtype=np.float64)
    return AtomArrays(p, np.full(len(p), 6), np.full(len(p), "C"))


def _helix_bundle(n_helices: int, length: int) -> np.ndarray:
    """C-alpha traces of helices (2.3 Å radius, 1.5 Å rise, 100° per residue) 10 Å apart on a
    square lattice, alternating up and down."""
    t = np.arange(length)
    helix = np.c_[2.3 * np.cos(np.radians(100) * t), 2.3 * np.sin(np.radians(100) * t), 1.5 * t]
    helix[:, 2] -= helix[:, 2].mean()
    side = int(np.ceil(np.sqrt(n_helices)))
    p = np.vstack(
        [
            helix * [1, 1, (-1) ** k] + [10.0 * (k % side), 10.0 * (k // side), 0]
            for k in range(n_helices)
        ]
    )
    return p - p.mean(axis=0)


def _sheets(n_sheets: int, strands: int, length: int) -> np.ndarray:
    """C-alpha traces of beta strands (3.3 Å per residue, pleated) 4.8 Å apart in sheets 10 Å
    apart, alternating direction."""
    t = np.arange(length)
    strand = np.c_[0.9 * (t % 2), np.zeros(length), 3.3 * t - 1.65 * (length - 1)]
    p = np.vstack(
        [
            strand * [1, 1, (-1) ** k] + [10.0 * s, 4.8 * k, 0]
            for s in range(n_sheets)
            for k in range(strands)
        ]
    )
    return p - p.mean(axis=0)


def _two_domain(hinge_deg: float) -> np.ndarray:
    """A helical domain and a beta domain (216 residues each) side by side, the beta domain
    turned about the hinge between them (the y axis) by ``hinge_deg``."""
    helical, beta = _helix_bundle(9, 24), _sheets(2, 9, 12)
    helical = helical - [helical[:, 0].min() - 3.0, 0, 0]
    beta = beta - [beta[:, 0].max() + 3.0, 0, 0]
    return np.vstack(
        [helical, beta @ Rotation.from_euler("y", hinge_deg, degrees=True).as_matrix().T]
    )


@pytest.fixture(scope="module")
def proteins() -> list[AtomArrays]:
    """Five unrelated 432-residue C-alpha models: helix bundle, beta sheets (a similar envelope),
    the two-domain protein, a long four-helix rod and a single wide sheet."""
    return [
        _calpha(p)
        for p in (
            _helix_bundle(18, 24),
            _sheets(4, 9, 12),
            _two_domain(0.0),
            _helix_bundle(4, 108),
            _sheets(1, 36, 12),
        )
    ]


@pytest.mark.parametrize("name", CONFIGS)
def test_soap_prior_is_valid_and_sees_shape(clouds, name):
    raw, a = _soap_prior(clouds, CONFIGS[name])
    _assert_valid_prior(a)
    assert np.all(raw <= 1.0 + 1e-12) and np.all(np.diag(raw) == 1.0)
    # The two balls (different random points) are each other's nearest neighbours; so are the rods.
    nearest = (a - 2 * np.eye(len(a))).argmax(axis=1)
    assert nearest[[0, 3, 1, 4]].tolist() == [3, 0, 4, 1]


@pytest.mark.parametrize("name", CONFIGS)
def test_a_rigid_copy_scores_one(clouds, name):
    structures = [*clouds, _moved(clouds[0], seed=1)]
    raw, a = _soap_prior(structures, CONFIGS[name])
    assert raw[0, -1] == pytest.approx(1.0, abs=1e-6)
    assert a[0, -1] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("name", ["default", "old"])
def test_a_jittered_copy_scores_above_every_pair_of_different_proteins(proteins, name):
    rigid, jittered = _moved(proteins[0], seed=1), _moved(proteins[0], seed=2, jitter_angstrom=1.0)
    raw, a = _soap_prior([*proteins, rigid, jittered], CONFIGS[name])
    assert raw[0, -2] == pytest.approx(1.0, abs=1e-6) and a[0, -2] == pytest.approx(1.0, abs=1e-6)
    iu = np.triu_indices(len(proteins), k=1)
    assert raw[0, -1] < 1.0
    assert raw[0, -1] > raw[iu].max() and a[0, -1] > a[iu].max()
    # Local bead environments (BEADS_SOAP) do not pass this: the k-means beads move with the
    # jitter, and they rate the bundle and the two-domain protein (half of it a bundle) higher.


@pytest.mark.parametrize("name", CONFIGS)
def test_permuting_structures_permutes_the_prior(proteins, name):
    perm = [2, 4, 0, 3, 1]
    _, a = _soap_prior(proteins, CONFIGS[name])
    _, b = _soap_prior([proteins[i] for i in perm], CONFIGS[name])
    np.testing.assert_allclose(b, a[np.ix_(perm, perm)], atol=1e-9)


def test_two_conformations_score_above_unrelated_proteins_of_the_same_size(proteins):
    # The two-domain protein with its hinge opened by 45°, beside four unrelated proteins of the
    # same size (432 residues); the helix bundle and the sheets have nearly its envelope.
    opened = _calpha(_two_domain(45.0))
    structures = [*proteins, opened]
    raw, a = _soap_prior(structures, af.SoapConfig())
    unrelated = [i for i in range(len(proteins)) if i != 2]
    pairs = [(i, j) for i in unrelated for j in unrelated if i < j]
    assert raw[2, -1] > max(raw[i, j] for i, j in pairs)
    assert a[2, -1] > max(a[i, j] for i, j in pairs)
    # The previous default did not see it: averaged local SOAP at 60 Å rated the bundle and the
    # sheets more alike than the two conformations.
    old = af.SoapConfig(
        centres="atoms",
        features="power",
        standardize=True,
        calibration="linear",
        n_max=6,
        l_max=6,
        r_cut_angstrom=60.0,
        sigma_angstrom=10.0,
        angular_weight=1.0,
    )
    raw_old = af.soap_similarity([*proteins, _calpha(_two_domain(60.0))], old)
    assert raw_old[2, -1] < raw_old[0, 1]


def test_subsampled_centres_keep_the_descriptor(monkeypatch):
    big = _cloud("ball", 7, n=400)
    config = af.SoapConfig(centres="atoms", **SMALL)
    full = af.soap_descriptors([big], config)[0]
    monkeypatch.setattr(af.soap, "MAX_SOAP_CENTERS", 100)
    assert len(af.soap._soap_centres(400)) == 100
    sub = af.soap_descriptors([big], config)[0]
    assert full @ sub / np.linalg.norm(full) / np.linalg.norm(sub) > 0.999


def test_the_whole_structure_cutoff_reaches_every_atom(clouds):
    # r_cut null: the cutoff is the farthest atom from the centroid plus 2 sigma.
    systems = af.soap._systems(clouds, af.SoapConfig())
    radius = max(np.linalg.norm(c.positions - c.positions.mean(0), axis=1).max() for c in clouds)
    assert af.soap.whole_structure_cutoff(systems, 25.0) == pytest.approx(radius + 50.0)
    # An explicit cutoff inside the structure sees less of it: the rods' ends are cut off.
    inner = af.soap_similarity(clouds, af.SoapConfig(r_cut_angstrom=10.0))
    assert not np.allclose(inner, af.soap_similarity(clouds, af.SoapConfig()))


def test_soap_refuses_inconsistent_settings_in_one_line():
    mixed = AtomArrays(np.zeros((2, 3)), np.array([6, 7]), np.array(["C", "N"]))
    with pytest.raises(InputError, match=r"affinity\.soap\.atoms is 'calpha' but structure 0"):
        af.soap_similarity([mixed], SMALL_SOAP)
    with pytest.raises(InputError, match=r"affinity\.soap\.r_cut_angstrom = 0\.5 is invalid"):
        af.soap_similarity([mixed], af.SoapConfig(atoms="heavy", r_cut_angstrom=0.5))
    with pytest.raises(InputError, match=r"features: amplitude needs one species"):
        af.soap_similarity([mixed], af.SoapConfig(atoms="heavy"))
    with pytest.raises(InputError, match=r"standardize needs kernel: average"):
        af.soap_similarity(
            [mixed], af.SoapConfig(atoms="heavy", kernel="rematch", standardize=True)
        )
    with pytest.raises(InputError, match=r"affinity\.soap\.calibration = 'sigmoid' is invalid"):
        af.SoapConfig(calibration="sigmoid")
    assert af.soap_similarity([mixed], af.SoapConfig(atoms="heavy", features="power")).shape == (
        1,
        1,
    )


# --- map cross-correlation -------------------------------------------------------------------


def test_map_cc_ignores_translation_and_rotation():
    d = 20
    rod_x = _ellipsoid(d, (2.5, 1.0, 1.0), (9.5, 9.5, 9.5))
    rod_x_shifted = _ellipsoid(d, (2.5, 1.0, 1.0), (10.5, 8.5, 9.5))
    rod_y = _ellipsoid(d, (1.0, 2.5, 1.0), (9.5, 9.5, 9.5))
    ball = _ellipsoid(d, (1.6, 1.6, 1.6), (9.5, 9.5, 9.5))
    maps = np.stack([rod_x, rod_x_shifted, rod_y, ball])
    only_identity = af.map_cc_similarity(maps, n_rotations=1, seed=0)
    assert only_identity[0, 1] > 0.999  # whole-voxel shift: undone by centring
    cc = af.map_cc_similarity(maps, n_rotations=300, seed=0)
    _assert_valid_prior(af.nearest_correlation_matrix(cc))
    np.testing.assert_array_equal(cc, cc.T)
    assert cc[0, 2] > 0.95 > only_identity[0, 2]  # a rotation finds the rod along y
    assert cc[0, 2] > cc[0, 3]
    np.testing.assert_array_equal(cc, af.map_cc_similarity(maps, n_rotations=300, seed=0))


# --- spread, projection, floor ---------------------------------------------------------------


def test_spread_is_the_documented_linear_map():
    raw = np.array([[1.0, 0.99, 0.98], [0.99, 1.0, 0.96], [0.98, 0.96, 1.0]])
    expected = np.array([[1.0, 0.5, 0.0], [0.5, 1.0, -1.0], [0.0, -1.0, 1.0]])
    np.testing.assert_allclose(af.spread_similarity(raw), expected, atol=1e-12)
    np.testing.assert_array_equal(af.spread_similarity(np.ones((3, 3))), np.ones((3, 3)))
    np.testing.assert_array_equal(af.spread_similarity(np.ones((1, 1))), np.ones((1, 1)))


def test_nearest_correlation_matrix_matches_higham_example():
    # Higham (2002), section 4: the nearest correlation matrix to this tridiagonal matrix.
    a = np.array([[2, -1, 0, 0], [-1, 2, -1, 0], [0, -1, 2, -1], [0, 0, -1, 2]], dtype=float)
    expected = np.array(
        [
            [1.0000, -0.8084, 0.1916, 0.1068],
            [-0.8084, 1.0000, -0.6562, 0.1916],
            [0.1916, -0.6562, 1.0000, -0.8084],
            [0.1068, 0.1916, -0.8084, 1.0000],
        ]
    )
    x = af.nearest_correlation_matrix(a)
    np.testing.assert_allclose(x, expected, atol=2e-4)
    _assert_valid_prior(x)
    np.testing.assert_allclose(af.nearest_correlation_matrix(x), x, atol=1e-8)


def test_best_l1_of_an_impossible_prior():
    # Three classes all pairwise opposite is impossible; the best unit vectors sit at 120°.
    a = np.array([[1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]])
    assert af.best_achievable_l1(a) == pytest.approx(0.5, abs=1e-6)
    final, info = af.build_affinity(a, spread=False)
    np.testing.assert_allclose(final[0, 1], -0.5, atol=1e-6)
    assert info["min_eigenvalue_before"] == pytest.approx(-1.0)
    assert info["best_l1_before"] == pytest.approx(0.5, abs=1e-6)
    assert abs(info["best_l1_after"]) < 1e-8
    assert af.best_achievable_l1(np.eye(3)) == pytest.approx(0.0, abs=1e-12)


def test_random_matrices_become_valid_priors():
    rng = np.random.default_rng(0)
    for n in (2, 5, 12):
        m = rng.uniform(-1, 1, (n, n))
        a, info = af.build_affinity((m + m.T) / 2)
        _assert_valid_prior(a)
        assert info["min_eigenvalue_after"] >= -1e-10


def test_spearman_agreement():
    a = np.array([[1.0, 0.9, 0.1], [0.9, 1.0, 0.5], [0.1, 0.5, 1.0]])
    assert af.spearman_agreement(a, a**3) == pytest.approx(1.0)
    assert af.spearman_agreement(a, -a) == pytest.approx(-1.0)
    assert np.isnan(af.spearman_agreement(np.eye(2), np.eye(2)))


# --- compute_affinity and the heatmap --------------------------------------------------------


def test_compute_affinity_for_each_source(clouds, tmp_path):
    names = ["ball1", "rod1", "disk", "ball2", "rod2"]
    d = 12
    maps = np.stack(
        [
            _ellipsoid(d, (2.5, 2.5, 2.5), (5.5, 5.5, 5.5)),
            _ellipsoid(d, (4.0, 1.2, 1.2), (5.5, 5.5, 5.5)),
            _ellipsoid(d, (3.5, 3.5, 1.0), (5.5, 5.5, 5.5)),
            _ellipsoid(d, (2.4, 2.6, 2.5), (5.5, 6.0, 5.5)),
            _ellipsoid(d, (1.2, 1.3, 4.0), (5.0, 5.5, 5.5)),
        ]
    )
    config = af.AffinityConfig(soap=SMALL_SOAP, map_cc_rotations=20)
    a, info = af.compute_affinity(names, clouds, maps, config, seed=3)
    _assert_valid_prior(a)
    json.dumps(info)  # plain JSON types only
    assert info["source"] == "soap" and -1.0 <= info["spearman_vs_map_cc"] <= 1.0
    assert np.array(info["raw"]).shape == (5, 5)

    by_maps, info = af.compute_affinity(
        names, clouds, maps, config.__class__(source="map_cc", map_cc_rotations=20), seed=3
    )
    _assert_valid_prior(by_maps)
    assert info["spearman_vs_map_cc"] == pytest.approx(1.0)

    path = tmp_path / "user.csv"
    af.write_affinity_csv(path, names[::-1], a[::-1, ::-1])
    from_csv, _ = af.compute_affinity(
        names, [], None, af.AffinityConfig(source="csv", csv_path=str(path)), seed=0
    )
    np.testing.assert_allclose(from_csv, a, atol=1e-12)

    with pytest.raises(InputError, match=r"affinity\.source = 'fsc' is invalid"):
        af.compute_affinity(names, clouds, maps, af.AffinityConfig(source="fsc"), seed=0)
    with pytest.raises(InputError, match="3 structures for 5 classes"):
        af.compute_affinity(names, clouds[:3], None, config, seed=0)


@pytest.mark.parametrize("source", ["uniform", "none"])
def test_classes_known_by_name_only_get_the_identity(source, caplog):
    """uniform and none need no structures, maps nor file: the identity, a valid prior that
    says nothing of how the classes relate (uniform warns that it carries no knowledge)."""
    names = ["ribo", "proteasome", "other"]
    with caplog.at_level("INFO", logger="cryoavae.affinity"):
        a, info = af.compute_affinity(names, [], None, af.AffinityConfig(source=source), seed=0)
    np.testing.assert_array_equal(a, np.eye(3))
    _assert_valid_prior(a)
    json.dumps(info)
    assert info["source"] == source and info["spearman_vs_map_cc"] is None
    warned = [r for r in caplog.records if r.levelname == "WARNING"]
    assert bool(warned) == (source == "uniform")
    if warned:
        assert "carries no knowledge" in warned[0].getMessage()


def test_heatmap_is_written_in_cluster_order(tmp_path):
    a = np.array(
        [
            [1.0, -0.5, 0.9, -0.4],
            [-0.5, 1.0, -0.6, 0.8],
            [0.9, -0.6, 1.0, -0.5],
            [-0.4, 0.8, -0.5, 1.0],
        ]
    )
    order = cluster_order(a).tolist()
    assert abs(order.index(0) - order.index(2)) == 1 and abs(order.index(1) - order.index(3)) == 1
    path = tmp_path / "figs" / "affinity.png"
    plot_affinity_heatmap(path, ["a", "b", "c", "d"], a, title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["affinity.png"]
