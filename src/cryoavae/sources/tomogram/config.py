"""The tomogram simulator's settings: the YAML section ``tomograms`` (names, defaults and bounds
come from the schema)."""

from __future__ import annotations

from cryoavae.core.schema import section_dataclass


class TomogramConfig(section_dataclass("tomograms", extra=[("tilt_max_deg", float, 60.0)])):
    """How each tomogram is simulated: sample, tilt series, dose, CTF and reconstruction.

    - Sample: ``size_x_px`` x ``size_y_px`` x ``size_z_px`` voxels at the study's voxel size (the
      ice slab is ``size_z_px`` thick); ``particles_per_class`` of every seen class and
      ``unseen_particles_per_class`` of every unseen class per tomogram, at uniformly random
      positions with their spheres at least ``particle_gap_angstrom`` apart, uniformly random
      orientations. The solvent's potential ``ice_potential_v`` is displaced by each particle,
      whose interior has ``protein_potential_v``.
    - Tilt series: tilts ``-tilt_max_deg, -tilt_max_deg + tilt_step_deg, ... <= tilt_max_deg``
      about y (``tilt_max_deg`` is the study's ``missing_wedge.tilt_max_deg``), recorded
      ``sequential`` (lowest tilt first) or ``dose_symmetric`` (0, +, -, ...); ``dose_e_per_a2``
      split evenly over them; ``shot_noise`` (Poisson counts) and ``radiation_damage`` (the
      exposure filter of the dose accumulated before each tilt) can be switched off;
      ``inelastic_mean_free_path_nm`` (null: none) removes the electrons an energy filter discards
      from the counted dose.
    - CTF (``ctf``): a defocus per tomogram uniform in ``[defocus_min_um, defocus_max_um]``, each
      tilt off it by a normal draw of ``defocus_spread_um``; ``defocus_gradient`` adds the
      height of the tilted specimen's mid-plane across the image.
    - Reconstruction: weighted back-projection with a ramp rolled off by a Gaussian of width
      ``radial_falloff_cycles_per_px`` above ``radial_cutoff_cycles_per_px`` (IMOD's RADIAL).
    """
