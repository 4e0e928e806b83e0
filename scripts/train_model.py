"""Rule train_model: one Affinity-VAE variant -> checkpoint, per-epoch history, summary; on
training.devices x nodes processes when the variant asks for several."""

from cryoavae.core.runlog import rule_logging
from cryoavae.train.launch import TrainingJob, launch

params, output = snakemake.params, snakemake.output
with rule_logging(
    snakemake.log[0], rule="train_model", variant=snakemake.wildcards.variant, seed=params.seed
):
    launch(
        TrainingJob(
            particles=snakemake.input.particles,
            affinity=snakemake.input.affinity,
            class_names=list(params.class_names),
            model=dict(params.model),
            training=dict(params.training),
            seed=params.seed,
            checkpoint=output.model,
            history=output.history,
            summary=output.summary,
            work_dir=params.work_dir,
            threads=snakemake.threads,
            log=snakemake.log[0],
        )
    )
