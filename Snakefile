# cryoavae: PDB structures -> SOAP affinity prior -> subtomograms -> Affinity-VAE -> evaluation.
# Run `snakemake --cores 2` for the embedded default study (config/config.yaml), or
# `snakemake --cores 2 --configfile config/<study>.yaml` for another one.


import os

# The default study applies only when no --configfile/--config is given: a study config is
# complete on its own, so keys of the default study never leak into it.
if not config:

    configfile: os.path.join(workflow.basedir, "config", "config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/structures.smk"
include: "workflow/rules/affinity.smk"
include: "workflow/rules/sources.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/inference.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


report: "workflow/report/workflow.rst"


rule all:
    default_target: True
    input:
        all_targets(),


onsuccess:
    print_run_summary()
