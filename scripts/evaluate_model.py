"""Rule evaluate_model: metrics.json, the novelty model (novelty.json), confusion matrix, UMAP
(figure, table, interactive page), pose, prior, interpolation and training figures."""

import pandas as pd

from cryoavae.core.runlog import rule_logging
from cryoavae.evaluate import (
    EvaluationConfig,
    evaluate_variant,
    write_confusion_csv,
    write_metrics_json,
    write_umap_table,
)
from cryoavae.inference.annotate import class_assignments
from cryoavae.inference.interpolate import interpolate_latents, write_interpolation_volumes
from cryoavae.inference.latents import read_latents
from cryoavae.inference.novelty_json import write_novelty_json
from cryoavae.particles import ParticleImages, read_particle_table, table_voxel_size
from cryoavae.report import evaluation_figures as figures
from cryoavae.report.interpolation_figures import plot_interpolations
from cryoavae.report.latent_explorer import write_latent_explorer
from cryoavae.report.training_figures import plot_training_history
from cryoavae.structures.symmetry import read_symmetry

params, inputs, out = snakemake.params, snakemake.input, snakemake.output
variant = snakemake.wildcards.variant
with rule_logging(snakemake.log[0], rule="evaluate_model", variant=variant):
    config = EvaluationConfig.from_dict(params.evaluation)
    latents = read_latents(inputs.latents)
    result = evaluate_variant(
        latents,
        inputs.affinity,
        inputs.train_summary,
        params.class_names,
        config,
        params.seed,
        umap_cache_dir=params.numba_cache,
        symmetry=read_symmetry(inputs.symmetry[0]) if inputs.symmetry else None,
    )
    write_metrics_json(out.metrics, result.metrics)
    write_novelty_json(out.novelty, result.novelty_model)
    write_confusion_csv(out.confusion_csv, result)
    write_umap_table(out.umap_table, latents, result)
    figures.plot_umap(out.umap, result)
    figures.plot_confusion_matrix(out.confusion, result)
    figures.plot_pose_correlation(out.pose, result)
    figures.plot_prior_vs_latent(out.prior, result)
    table = read_particle_table(inputs.particles)
    write_latent_explorer(
        out.explorer,
        latents,
        pd.read_csv(out.umap_table, sep="\t"),
        class_assignments(latents, latents, params.class_names, result.novelty_model),
        ParticleImages(table, inputs.particles),
        params.class_names,
        seed=params.seed,
        title=f"Latent space of variant {variant} (UMAP of mu)",
    )
    interpolations = interpolate_latents(
        inputs.model,
        latents,
        interpolation_steps=config.interpolation_steps,
        interpolation_pose_classes=config.interpolation_pose_classes,
        seed=params.seed,
    )
    plot_interpolations(out.interpolations, interpolations, result.ndim)
    voxel_size = table_voxel_size(table, inputs.particles)
    write_interpolation_volumes(out.interpolation_stack, interpolations, voxel_size)
    history = pd.read_csv(inputs.history, sep="\t")
    plot_training_history(out.training_curves, history, title=f"variant {variant}")
