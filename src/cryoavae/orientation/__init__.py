"""Orientations by template matching, and the averages they make.

- :mod:`.templates`: ``orientation.method: template_matching``: the decoder's renderings of latent
  centres as templates, each particle matched against them, the templates refined by the
  particles' averages (:func:`matched_orientations`);
- :mod:`.matcher`: the search itself: particles against templates over SO(3) and shifts as the
  microscope measured them (missing wedge, CTF), a global grid at a low pass, then local
  refinement, as batched torch work (CPU or CUDA); :mod:`.fourier`: its Fourier-space
  arithmetic (rotated templates sampled from their spectra, shifts as phase ramps);
- :mod:`.averaging`: subtomogram averages from particles turned back by their orientations,
  missing-wedge weighted.
"""
