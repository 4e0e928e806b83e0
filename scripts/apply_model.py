"""Rule apply_model: latents, nearest seen class, novelty (flagged by the study's threshold) and
place in the study's UMAP of a new particle set (a TSV, and the set's own STAR file with those
columns added)."""

from pathlib import Path

from cryoavae.core.runlog import rule_logging
from cryoavae.core.threads import use_threads
from cryoavae.geometry.ctf import CtfModel
from cryoavae.inference.annotate import read_umap
from cryoavae.inference.apply import apply_model, write_assignments, write_results
from cryoavae.inference.latents import read_latents
from cryoavae.inference.novelty_json import read_novelty_json
from cryoavae.orientation.templates import OrientationConfig

inputs, wildcards, params = snakemake.input, snakemake.wildcards, snakemake.params
with rule_logging(snakemake.log[0], rule="apply_model", variant=wildcards.variant):
    use_threads(snakemake.threads)
    reference = read_latents(inputs.reference)
    novelty = read_novelty_json(inputs.novelty, reference)
    result = apply_model(
        Path(inputs.model),
        Path(inputs.particles),
        reference,
        orientation=OrientationConfig.from_dict(params.orientation),
        seed=params.seed,
        ctf=CtfModel(**params.microscope) if params.microscope else None,
        umap=read_umap(inputs.umap_table),
        novelty=novelty,
    )
    write_assignments(snakemake.output.table, result)
    write_results(snakemake.output.star, Path(inputs.particles), result, reference, novelty)
