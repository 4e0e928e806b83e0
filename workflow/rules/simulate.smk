rule simulate_subtomograms:
    """One shard of simulated subtomograms: random pose, CTF, missing wedge, noise."""
    input:
        maps=map_files(),
    output:
        stack=f"{R}/particles/shard_{{shard}}.mrcs",
        star=f"{R}/particles/shard_{{shard}}.star",
    log:
        f"{R}/logs/simulate_subtomograms/{{shard}}.log",
    conda:
        "../../envs/cryoavae.yaml"
    threads: THREADS
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        class_names=CLASSES,
        unseen=UNSEEN,
        simulation=config["simulation"],
        voxel_size_angstrom=config["density"]["voxel_size_angstrom"],
        seed=config["seed"],
    script:
        "../../scripts/simulate_subtomograms.py"


rule collect_particles:
    """All shards in one STAR table (rows point into the shard stacks)."""
    input:
        stars=expand(f"{R}/particles/shard_{{shard}}.star", shard=SHARDS),
        stacks=expand(f"{R}/particles/shard_{{shard}}.mrcs", shard=SHARDS),
    output:
        f"{R}/particles/particles.star",
    log:
        f"{R}/logs/collect_particles.log",
    conda:
        "../../envs/cryoavae.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../../scripts/collect_particles.py"
