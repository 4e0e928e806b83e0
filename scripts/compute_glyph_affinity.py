"""Rule compute_glyph_affinity: the characters' prior from glyph similarity, made PSD."""

from cryoavae.affinity import build_affinity, read_affinity_csv, write_affinity_csv
from cryoavae.core.atomic import write_text_atomic
from cryoavae.core.runlog import dump_json, rule_logging
from cryoavae.report.affinity_figures import plot_affinity_heatmap
from cryoavae.sources.characters import CharacterConfig, glyph_affinity

params = snakemake.params
with rule_logging(snakemake.log[0], rule="compute_glyph_affinity"):
    config = CharacterConfig(**params.characters)
    names, raw = glyph_affinity(config)
    if params.affinity["source"] == "csv":
        matrix, info = read_affinity_csv(params.affinity["csv_path"], names), {"source": "csv"}
    else:
        matrix, info = build_affinity(raw)
        info = {"source": "glyph", "raw": raw.tolist(), **info}
    write_affinity_csv(snakemake.output.csv, names, matrix)
    plot_affinity_heatmap(snakemake.output.heatmap, names, matrix, title="Affinity prior (glyphs)")
    write_text_atomic(snakemake.output.info, dump_json(info))
