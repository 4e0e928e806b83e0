"""Particle sources: every way particles enter a study, each writing the particle contract.

- :mod:`.simulate`: subtomograms simulated from density maps (pose, CTF, wedge, noise);
- :mod:`.tomogram`: simulated tomograms (sample, tilt series, reconstruction, ground truth);
- :mod:`.extract`: boxes cut from tomograms at picked positions;
- :mod:`.star`: a user's own subtomograms listed in a RELION/Warp STAR file, read in place;
- :mod:`.characters`: the paper's 2-D character set and its glyph prior;
- :mod:`.legacy_folder`: the original Affinity-VAE code's data folder, converted to a STAR study.

Sources depend on :mod:`cryoavae.particles` (the contract) and below, never on each other, and only
the pipeline's scripts import them: nothing downstream knows where particles came from.
"""
