"""Rule train_model: one Affinity-VAE variant -> checkpoint, per-epoch history, summary."""

from pathlib import Path

from cryoavae.affinity import read_affinity_csv
from cryoavae.atomic import write_text_atomic
from cryoavae.model import ModelConfig
from cryoavae.particles import ParticleImages, read_particle_table
from cryoavae.runlog import dump_json, rule_logging
from cryoavae.train import TrainingConfig, train_model

params = snakemake.params
with rule_logging(
    snakemake.log[0], rule="train_model", variant=snakemake.wildcards.variant, seed=params.seed
):
    table = read_particle_table(snakemake.input.particles)
    images = ParticleImages(table, snakemake.input.particles)
    box_size = images.shape[-1]
    model_config = ModelConfig.from_dict(
        {**params.model, "ndim": len(images.shape) - 1, "box_size_px": box_size}
    )
    affinity = read_affinity_csv(snakemake.input.affinity, params.class_names)
    summary = train_model(
        table,
        images,
        affinity,
        model_config,
        TrainingConfig.from_dict(params.training),
        seed=params.seed,
        checkpoint_path=Path(snakemake.output.model),
        history_path=Path(snakemake.output.history),
        work_dir=Path(params.work_dir),
        threads=snakemake.threads,
    )
    write_text_atomic(snakemake.output.summary, dump_json(summary))
