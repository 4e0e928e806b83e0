"""Rule compute_affinity: the class x class prior, its heatmap and its diagnostics."""

from pathlib import Path

import numpy as np

from cryoavae.affinity import (
    UNINFORMED,
    AffinityConfig,
    compute_affinity,
    soap_selection,
    write_affinity_csv,
)
from cryoavae.core.atomic import write_text_atomic
from cryoavae.core.runlog import dump_json, rule_logging
from cryoavae.core.threads import use_threads
from cryoavae.report.affinity_figures import plot_affinity_heatmap
from cryoavae.structures import AtomSelection, load_atoms
from cryoavae.structures.density import read_map

params = snakemake.params
with rule_logging(snakemake.log[0], rule="compute_affinity", seed=params.seed):
    use_threads(snakemake.threads)
    config = AffinityConfig.from_dict(params.affinity)
    selection = soap_selection(config.soap, AtomSelection(**params.selection))
    atoms = [load_atoms(Path(p), selection) for p in snakemake.input.structures]
    maps = [read_map(p)[0] for p in snakemake.input.maps]  # none: classes without structures
    maps = np.stack(maps) if maps else None
    matrix, info = compute_affinity(params.class_names, atoms, maps, config, seed=params.seed)
    write_affinity_csv(snakemake.output.csv, params.class_names, matrix)
    agreement = info.get("spearman_vs_map_cc")
    title = f"Affinity prior ({config.source})"
    if config.source in UNINFORMED:
        title += ": the identity, no knowledge of how the classes relate"
    if agreement is not None and config.source != "map_cc":
        title += f"; agreement with the map cross-correlation prior: Spearman {agreement:.2f}"
    plot_affinity_heatmap(snakemake.output.heatmap, params.class_names, matrix, title=title)
    write_text_atomic(snakemake.output.info, dump_json(info))
