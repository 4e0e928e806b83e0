"""cryoavae: Affinity-VAE for cryo-electron tomography subtomograms."""

__version__ = "0.1.0"
