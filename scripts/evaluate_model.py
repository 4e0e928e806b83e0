"""Rule evaluate_model: metrics.json, confusion matrix, UMAP, pose, prior and training figures."""

import json

import pandas as pd

from cryoavae.affinity import read_affinity_csv
from cryoavae.evaluate import (
    EvaluationConfig,
    evaluate_latents,
    write_confusion_csv,
    write_metrics_json,
)
from cryoavae.interpolate import interpolate_latents, write_interpolation_volumes
from cryoavae.particles import stack_voxel_size
from cryoavae.report import evaluation_figures as figures
from cryoavae.report.interpolation_figures import plot_interpolations
from cryoavae.report.training_figures import plot_training_history
from cryoavae.runlog import start_logging

params, out = snakemake.params, snakemake.output
start_logging(snakemake.log[0], rule="evaluate_model", variant=snakemake.wildcards.variant)
settings = dict(params.evaluation)
steps, pose_classes = (
    settings.pop("interpolation_steps"),
    settings.pop("interpolation_pose_classes"),
)
latents = pd.read_csv(snakemake.input.latents, sep="\t", dtype={"class_name": str})
affinity = read_affinity_csv(snakemake.input.affinity, params.class_names)
with open(snakemake.input.train_summary) as handle:
    training = json.load(handle)
result = evaluate_latents(
    latents,
    params.class_names,
    affinity,
    EvaluationConfig(**settings),
    seed=params.seed,
    ndim=training["ndim"],
)
metrics = {
    **result.metrics,
    **{k: training[k] for k in ("train_seconds", "train_samples_per_second", "device")},
}
write_metrics_json(out.metrics, metrics)
write_confusion_csv(out.confusion_csv, result)
figures.plot_umap(out.umap, result)
figures.plot_confusion_matrix(out.confusion, result)
figures.plot_pose_correlation(out.pose, result)
figures.plot_prior_vs_latent(out.prior, result)
interpolations = interpolate_latents(
    snakemake.input.model, latents, n_steps=steps, n_pose_classes=pose_classes, seed=params.seed
)
plot_interpolations(out.interpolations, interpolations, training["ndim"])
write_interpolation_volumes(
    out.interpolation_stack, interpolations, stack_voxel_size(snakemake.input.first_stack)
)
history = pd.read_csv(snakemake.input.history, sep="\t")
plot_training_history(out.training_curves, history, title=f"variant {snakemake.wildcards.variant}")
