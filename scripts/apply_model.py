"""Rule apply_model: latents, nearest seen class and novelty of a new particle set."""

from pathlib import Path

import torch

from cryoavae.apply import apply_model, write_assignments
from cryoavae.latents import read_latents
from cryoavae.runlog import rule_logging

wildcards = snakemake.wildcards
with rule_logging(snakemake.log[0], rule="apply_model", variant=wildcards.variant):
    torch.set_num_threads(snakemake.threads)
    result = apply_model(
        Path(snakemake.input.model),
        Path(snakemake.input.particles),
        read_latents(snakemake.input.reference),
    )
    write_assignments(snakemake.output[0], result)
