"""Subtomograms cut out of tomograms at picked positions: :mod:`.pipeline` (the stage: an MRC
tomogram and a list file, or a tomogram and picks already read) and :mod:`.boxes` (the cutting:
gathered from a view or read in slabs, resampled, normalised)."""

from cryoavae.sources.extract.boxes import (
    Tomogram,
    box_centres_xyz,
    cut_boxes,
    cut_particles,
    normalize_boxes,
    resample_boxes,
    volume_mean,
)
from cryoavae.sources.extract.pipeline import (
    EXTRACTION_KEYS,
    ExtractionConfig,
    extract_particles,
    extract_subtomograms,
    open_tomogram,
)

__all__ = [
    "EXTRACTION_KEYS",
    "ExtractionConfig",
    "Tomogram",
    "box_centres_xyz",
    "cut_boxes",
    "cut_particles",
    "extract_particles",
    "extract_subtomograms",
    "normalize_boxes",
    "open_tomogram",
    "resample_boxes",
    "volume_mean",
]
