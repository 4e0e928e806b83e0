# Four sources of particles, one contract: particles/particles.star and the stacks it points to
# (see src/cryoavae/particles/). Generated particles go to shard_<k>.mrcs + .star first.
if SOURCE == "simulate":

    rule simulate_subtomograms:
        """One shard of simulated subtomograms: random pose, CTF, missing wedge, noise."""
        input:
            maps=map_files(),
        output:
            stack=f"{R}/particles/shard_{{shard}}.mrcs",
            star=f"{R}/particles/shard_{{shard}}.star",
        log:
            f"{R}/logs/simulate_subtomograms/{{shard}}.log",
        benchmark:
            f"{R}/benchmarks/simulate_subtomograms/{{shard}}.tsv"
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

elif SOURCE == "extract":

    rule extract_subtomograms:
        """Subtomograms cut out of one tomogram (one shard) at the positions of its particle list."""
        input:
            tomogram=lambda wildcards: tomogram_entry(wildcards)["tomogram"],
            particles=lambda wildcards: tomogram_entry(wildcards)["particles"],
        output:
            stack=f"{R}/particles/shard_{{shard}}.mrcs",
            star=f"{R}/particles/shard_{{shard}}.star",
        log:
            f"{R}/logs/extract_subtomograms/{{shard}}.log",
        benchmark:
            f"{R}/benchmarks/extract_subtomograms/{{shard}}.tsv"
        conda:
            "../../envs/cryoavae.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            class_names=CLASSES,
            unseen=UNSEEN,
            extraction={
                k: v for k, v in config["extraction"].items() if k != "tomograms"
            },
            seed=config["seed"],
        script:
            "../../scripts/extract_subtomograms.py"

elif SOURCE == "star":

    rule import_star_particles:
        """Your own subtomograms: the study's particle table over your STAR file's stacks."""
        input:
            star=config["star"]["particles"],
        output:
            f"{R}/particles/particles.star",
        log:
            f"{R}/logs/import_star_particles.log",
        benchmark:
            f"{R}/benchmarks/import_star_particles.tsv"
        conda:
            "../../envs/cryoavae.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=30,
        params:
            class_names=CLASSES,
            unseen=UNSEEN,
            star={
                k: v
                for k, v in config["star"].items()
                if k not in ("particles", "classes", "unseen")
            },
            seed=config["seed"],
        script:
            "../../scripts/import_star_particles.py"

elif SOURCE == "characters":

    rule generate_characters:
        """The 2-D character set: rendered glyphs, random in-plane rotations, optional noise."""
        output:
            stack=f"{R}/particles/shard_000.mrcs",
            star=f"{R}/particles/shard_000.star",
        log:
            f"{R}/logs/generate_characters.log",
        benchmark:
            f"{R}/benchmarks/generate_characters.tsv"
        conda:
            "../../envs/cryoavae.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            characters=config["characters"],
            seed=config["seed"],
        script:
            "../../scripts/generate_characters.py"


if SOURCE != "star":

    rule collect_particles:
        """All shards in one STAR table (rows point into the shard stacks)."""
        input:
            stars=expand(f"{R}/particles/shard_{{shard}}.star", shard=SHARDS),
            stacks=expand(f"{R}/particles/shard_{{shard}}.mrcs", shard=SHARDS),
        output:
            f"{R}/particles/particles.star",
        log:
            f"{R}/logs/collect_particles.log",
        benchmark:
            f"{R}/benchmarks/collect_particles.tsv"
        conda:
            "../../envs/cryoavae.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        script:
            "../../scripts/collect_particles.py"
