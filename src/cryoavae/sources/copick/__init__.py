"""A copick project (the CZ cryo-ET data portal's format) in and out: its tomograms and picks
read for extraction, each variant's results written back as picks.

The project's config file and runs are read by :mod:`cryoavae.core.copick_config` (the study's
classes and shards, needed before any job); here its data: :mod:`.tomograms` (OME-Zarr levels,
read lazily), :mod:`.picks` (picks files in and out, the orientation convention) and
:mod:`.results` (an annotated particle table back into the project as picks). The extraction
itself is :mod:`cryoavae.sources.extract`'s, handed a tomogram and picks by the rule's script.
"""

from cryoavae.sources.copick.picks import (
    BOX_CENTRE_COLUMNS,
    LOCATION_COLUMNS,
    RUN_COLUMN,
    CopickConfig,
    CopickPicks,
    read_copick_picks,
    write_picks_file,
)
from cryoavae.sources.copick.results import write_copick_results
from cryoavae.sources.copick.tomograms import (
    CopickTomogram,
    multiscale_levels,
    open_copick_tomogram,
)

__all__ = [
    "BOX_CENTRE_COLUMNS",
    "LOCATION_COLUMNS",
    "RUN_COLUMN",
    "CopickConfig",
    "CopickPicks",
    "CopickTomogram",
    "multiscale_levels",
    "open_copick_tomogram",
    "read_copick_picks",
    "write_copick_results",
    "write_picks_file",
]
