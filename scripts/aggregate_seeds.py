"""Rule aggregate_seeds: every seed's metrics in one table, mean ± sd, and its Markdown."""

import json
from pathlib import Path

import pandas as pd

from cryoavae.core.atomic import write_text_atomic
from cryoavae.core.runlog import rule_logging
from cryoavae.evaluate.seeds import seed_summary_markdown, seed_summary_table
from cryoavae.evaluate.summary import figure_links

with rule_logging(snakemake.log[0], rule="aggregate_seeds"):
    params = snakemake.params
    runs = [(v, s) for s in params.seeds for v in params.variants]  # the input's order
    metrics = {
        run: json.loads(Path(path).read_text())
        for run, path in zip(runs, snakemake.input.metrics, strict=True)
    }
    averages = {
        run: pd.read_csv(path, sep="\t")
        for run, path in zip(runs, snakemake.input.averages, strict=True)
    }
    table = seed_summary_table(params.variants, params.seeds, metrics, averages)
    write_text_atomic(snakemake.output.summary, table.to_csv(sep="\t", index=False))
    splits = sorted({m.get("scored_split", "val") for m in metrics.values()})
    # the first seed's first variant (the input's first metrics.json)
    figures = figure_links(snakemake.input.metrics[0], snakemake.output.markdown)
    markdown = seed_summary_markdown(
        params.study,
        table,
        params.seeds,
        "/".join(splits),
        params.command,
        figures,
        params.angles_from,
    )
    write_text_atomic(snakemake.output.markdown, markdown)
