"""Rule plot_tomogram_particles: a gallery of extracted subtomograms per class."""

from cryoavae.core.runlog import rule_logging
from cryoavae.report.tomogram_figures import plot_tomogram_particles

params = snakemake.params
with rule_logging(snakemake.log[0], rule="plot_tomogram_particles", seed=params.seed):
    plot_tomogram_particles(
        snakemake.output[0],
        list(snakemake.input.stars),
        params.class_names,
        set(params.unseen),
        seed=params.seed,
    )
