"""The Affinity-VAE model: encoder, decoders, the pose and its search, the measurement.

- :mod:`.config`: :class:`ModelConfig`, the ``model`` section with the data's shape;
- :mod:`.vae`: the encoder, :class:`AffinityVAE`, ``build_model`` and ``load_model``;
- :mod:`.decoders`, :mod:`.layers`: the CNN and Gaussian-splat decoders and the 2-D/3-D layers
  they share with the encoder; :mod:`.splats`: rendering Gaussians on a grid;
- :mod:`.pose`: a pose vector turned into a rotation (angle, cos/sin, axis-angle, quaternion, 6-D);
- :mod:`.pose_search`: winner-takes-all over offset rotations of the encoder's guess;
- :mod:`.measurement`: the forward model of the data (a rendering with the missing wedge and
  the CTF the particle was measured with).

The model imports only :mod:`cryoavae.core` and :mod:`cryoavae.geometry`: a checkpoint is rebuilt
from its own config, whatever the particles' source.
"""
