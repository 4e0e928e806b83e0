"""Rule fit_references: the templates every matching job of a variant shares."""

from cryoavae.core.runlog import rule_logging
from cryoavae.core.threads import use_threads
from cryoavae.geometry.ctf import CtfModel
from cryoavae.inference.embed import fit_study_references
from cryoavae.inference.jobs import gather_parts
from cryoavae.model.vae import load_model
from cryoavae.orientation.templates import OrientationConfig
from cryoavae.particles import ParticleImages, read_particle_table

with rule_logging(snakemake.log[0], rule="fit_references", variant=snakemake.wildcards.variant):
    use_threads(snakemake.threads)
    table = read_particle_table(snakemake.input.particles)
    images = ParticleImages(table, snakemake.input.particles)
    params = snakemake.params
    model, _, _ = load_model(snakemake.input.model, "cpu")
    references = fit_study_references(
        model,
        gather_parts(snakemake.input.encoded),
        table,
        images,
        OrientationConfig.from_dict(params.orientation),
        params.seed,
        CtfModel(**params.microscope) if params.microscope else None,
    )
    references.save(snakemake.output[0])
