"""Rule fetch_structure: a PDB entry or the user's own model -> gzipped mmCIF."""

from pathlib import Path

from cryoavae.core.runlog import rule_logging
from cryoavae.structures import FetchConfig, fetch_structure, import_structure_file

source = snakemake.params.source
with rule_logging(
    snakemake.log[0], rule="fetch_structure", structure=snakemake.wildcards.structure
):
    output = Path(snakemake.output[0])
    if source["local_file"]:
        import_structure_file(Path(source["local_file"]), output)
    else:
        fetch_structure(
            source["pdb_id"],
            output,
            resources_dir=Path(source["resources_dir"]),
            config=FetchConfig(**source["fetch"]),
        )
