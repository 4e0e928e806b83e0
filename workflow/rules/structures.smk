rule fetch_structure:
    """Fetch a PDB entry (bundled copy, cache or archive) or import the user's own model."""
    output:
        f"{S}/structures/{{structure}}.cif.gz",
    log:
        f"{S}/logs/fetch_structure/{{structure}}.log",
    benchmark:
        f"{S}/benchmarks/fetch_structure/{{structure}}.tsv"
    conda:
        "../../envs/cryoavae.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        source=structure_params,
    script:
        "../../scripts/fetch_structure.py"


rule make_density_map:
    """Atoms -> potential map at the study's voxel size, centred in the study's box."""
    input:
        f"{S}/structures/{{structure}}.cif.gz",
    output:
        f"{S}/maps/{{structure}}.mrc",
    log:
        f"{S}/logs/make_density_map/{{structure}}.log",
    benchmark:
        f"{S}/benchmarks/make_density_map/{{structure}}.tsv"
    conda:
        "../../envs/cryoavae.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        selection=atom_selection(),
        density=config["density"],
    script:
        "../../scripts/make_density_map.py"


rule fit_symmetry:
    """Each point group of evaluation.symmetry placed in its class's map frame."""
    input:
        maps=map_files(),
    output:
        f"{S}/maps/symmetry.json",
    log:
        f"{S}/logs/fit_symmetry.log",
    benchmark:
        f"{S}/benchmarks/fit_symmetry.tsv"
    conda:
        "../../envs/cryoavae.yaml"
    threads: 1  # a second thread did not shorten it; it runs beside the simulation
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        structures=STRUCTURES,
        symmetry=config["evaluation"]["symmetry"],
        seed=config["seed"],
    script:
        "../../scripts/fit_symmetry.py"
