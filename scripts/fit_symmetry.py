"""Rule fit_symmetry: each point group named in evaluation.symmetry, placed in its class's map
frame (:mod:`cryoavae.structures.symmetry`), as maps/symmetry.json."""

from cryoavae.core.runlog import rule_logging
from cryoavae.core.threads import use_threads
from cryoavae.structures.density import read_map
from cryoavae.structures.symmetry import fit_point_group, write_symmetry

params, inputs, out = snakemake.params, snakemake.input, snakemake.output
with rule_logging(snakemake.log[0], rule="fit_symmetry") as log:
    use_threads(snakemake.threads)
    paths = dict(zip(params.structures, inputs.maps, strict=True))
    fits = {}
    for name, group in params.symmetry.items():  # the config check made sure each has a map
        fit = fit_point_group(read_map(paths[name])[0], group, params.seed, name)
        fits[name] = fit
        log.info(
            "%s %s: map vs itself turned by its elements %.3f (by 15 degrees %.3f)",
            name,
            group,
            fit.element_cc,
            fit.cc_at_15deg,
        )
    write_symmetry(out[0], fits)
