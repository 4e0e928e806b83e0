"""Inference with a trained model: particles in, latents, classes, novelty, orientation out.

- :mod:`.latents`: the latents table and its geometry (columns, class centroids, nearest class);
- :mod:`.embed`: every particle through the encoder (and the orientation step) to a latents table;
- :mod:`.novelty`: how unlike every seen class a particle is, and the threshold that flags it;
- :mod:`.apply`: a trained model on a new particle set (``python -m cryoavae.inference.apply``);
- :mod:`.annotate`: results written back onto the input particles as STAR columns;
- :mod:`.relion5`: those results as a RELION 5 tomography particle set (re-extract, refine);
- :mod:`.interpolate`: decoded walks between class means and along the pose.

A trained model is rebuilt from its checkpoint alone: nothing here imports training or a source.
"""
