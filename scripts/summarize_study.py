"""Rule summarize_study: one row per model variant, and the study's provenance."""

import json
from pathlib import Path

from cryoavae.core.atomic import write_text_atomic
from cryoavae.core.runlog import dump_json, provenance, rule_logging
from cryoavae.evaluate.summary import (
    figure_links,
    resource_table,
    summary_markdown,
    summary_table,
)
from cryoavae.report.summary_figures import plot_resources, plot_variant_comparison

with rule_logging(snakemake.log[0], rule="summarize_study"):
    params, inputs = snakemake.params, snakemake.input
    metrics = [json.loads(Path(p).read_text()) for p in inputs.metrics]
    summaries = [json.loads(Path(p).read_text()) for p in inputs.summaries]
    affinity_info = json.loads(Path(inputs.affinity_info).read_text())
    table = summary_table(params.variants, metrics, summaries)
    write_text_atomic(snakemake.output.summary, table.to_csv(sep="\t", index=False))
    plot_variant_comparison(snakemake.output.comparison, table)
    figures = figure_links(inputs.metrics[0], snakemake.output.markdown)  # the first variant's
    markdown = summary_markdown(params.study, table, metrics, figures, params.angles_from)
    write_text_atomic(snakemake.output.markdown, markdown)
    devices = {v: s["device"] for v, s in zip(params.variants, summaries, strict=True)}
    record = provenance(params.config, devices, code_dir=Path(snakemake.scriptdir).parent)
    record["affinity"] = {k: v for k, v in affinity_info.items() if not isinstance(v, list)}
    write_text_atomic(snakemake.output.provenance, dump_json(record))
    resources = resource_table(inputs.benchmarks)
    write_text_atomic(snakemake.output.resources, resources.to_csv(sep="\t", index=False))
    plot_resources(snakemake.output.resources_figure, resources)
