"""Geometry of tomography, shared by the simulator, the model, matching and evaluation.

One home per concept, below every stage that uses it:

- :mod:`.rotations`: rotation matrices: RELION ZYZ Euler angles, uniform random rotations,
  geodesic distance, the nearest rotation to a matrix, the global alignment of two sets;
- :mod:`.point_groups`: the point groups (C_n, D_n, T, O, I) as rotation sets and orders;
- :mod:`.volume_rotation`: turning and shifting volumes (trilinear in real space, and
  Fourier-space sampling of padded spectra), with its compiled loops in :mod:`._volume_kernels`;
- :mod:`.ctf`: the contrast transfer function;
- :mod:`.wedge`: the missing wedge of single-axis tilt tomography as a Fourier mask.

Conventions: volumes are indexed ``(z, y, x)``, vectors are ``(x, y, z)``, the box centre is
voxel ``d // 2``, the tilt axis is y and the beam is z.
"""
