# Particle sources: every way particles enter a study, one contract out of all of them:
# particles/particles.star and the stacks it points to (see src/cryoavae/particles/). Generated
# particles go to particles/shard_<k>.{mrcs,star} first; a STAR study reads your files in place.
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
        priority: 1  # before the prior and the symmetry fit: training waits for it, not them
        conda:
            "../../envs/cryoavae.yaml"
        threads: 1  # shards run side by side (simulation.n_shards), beside the prior and maps
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            class_names=CLASSES,
            unseen=UNSEEN,
            simulation=simulation_params(),
            voxel_size_angstrom=config["density"]["voxel_size_angstrom"],
            seed=lambda wildcards: int(wildcards.seed),
        script:
            "../../scripts/simulate_subtomograms.py"

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
            seed=lambda wildcards: int(wildcards.seed),
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
            seed=lambda wildcards: int(wildcards.seed),
        script:
            "../../scripts/generate_characters.py"

elif SOURCE == "tomograms":

    rule simulate_tomogram:
        """One tomogram: crowded sample in ice, dose-limited tilt series with a CTF per tilt, weighted back-projection; its ground truth."""
        input:
            maps=map_files(),
        output:
            tomogram=f"{R}/tomograms/{{tomogram}}/tomogram.mrc",
            star=f"{R}/tomograms/{{tomogram}}/particles.star",
            locations=f"{R}/tomograms/{{tomogram}}/particle_locations.txt",
            info=f"{R}/tomograms/{{tomogram}}/tomogram.json",
            central_slice=report(
                f"{R}/tomograms/{{tomogram}}/central_slice.png",
                caption="../report/tomogram_slice.rst",
                category="1. Tomograms",
                subcategory="{tomogram}",
            ),
        log:
            f"{R}/logs/simulate_tomogram/{{tomogram}}.log",
        benchmark:
            f"{R}/benchmarks/simulate_tomogram/{{tomogram}}.tsv"
        wildcard_constraints:
            tomogram=r"\d{3}",
        conda:
            "../../envs/cryoavae.yaml"
        threads: THREADS
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            class_names=CLASSES,
            unseen=UNSEEN,
            tomograms=tomogram_params(),
            voxel_size_angstrom=config["density"]["voxel_size_angstrom"],
            box_size_px=config["extraction"]["box_size_px"],
            seed=lambda wildcards: int(wildcards.seed),
        script:
            "../../scripts/simulate_tomogram.py"

    rule extract_picks:
        """Realistic picks of one tomogram, false positives (class background) included: a
        particle set for apply.particle_sets (a tomogram beyond n_tomograms was never seen).
        """
        input:
            tomogram=f"{R}/tomograms/{{shard}}/tomogram.mrc",
            particles=f"{R}/tomograms/{{shard}}/particles.star",
        output:
            stack=f"{R}/tomograms/{{shard}}/picks.mrcs",
            star=f"{R}/tomograms/{{shard}}/picks.star",
        log:
            f"{R}/logs/extract_picks/{{shard}}.log",
        benchmark:
            f"{R}/benchmarks/extract_picks/{{shard}}.tsv"
        conda:
            "../../envs/cryoavae.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            class_names=CLASSES,
            unseen=UNSEEN,
            extraction=extraction_params(for_study=False),
            seed=lambda wildcards: int(wildcards.seed),
        script:
            "../../scripts/extract_picks.py"

    rule plot_tomogram_particles:
        """A few extracted subtomograms of every class (central slices), across the tomograms."""
        input:
            stars=expand(
                f"{R}/particles/shard_{{shard}}.star", shard=SHARDS, allow_missing=True
            ),
            stacks=expand(
                f"{R}/particles/shard_{{shard}}.mrcs", shard=SHARDS, allow_missing=True
            ),
        output:
            report(
                f"{R}/tomograms/extracted_subtomograms.png",
                caption="../report/tomogram_particles.rst",
                category="1. Tomograms",
            ),
        log:
            f"{R}/logs/plot_tomogram_particles.log",
        benchmark:
            f"{R}/benchmarks/plot_tomogram_particles.tsv"
        conda:
            "../../envs/cryoavae.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            class_names=CLASSES,
            unseen=UNSEEN,
            seed=lambda wildcards: int(wildcards.seed),
        script:
            "../../scripts/plot_tomogram_particles.py"

elif SOURCE == "copick":

    rule extract_copick:
        """One copick run's particles: its tomogram (OME-Zarr, the level nearest the study's
        voxel size) cut at its picks of the study's objects, as extract_subtomograms cuts.
        """
        input:
            config=config["copick"]["config"],
        output:
            stack=f"{R}/particles/shard_{{shard}}.mrcs",
            star=f"{R}/particles/shard_{{shard}}.star",
        log:
            f"{R}/logs/extract_copick/{{shard}}.log",
        benchmark:
            f"{R}/benchmarks/extract_copick/{{shard}}.tsv"
        conda:
            "../../envs/cryoavae.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            class_names=CLASSES,
            unseen=UNSEEN,
            run=lambda wildcards: COPICK_RUNS[int(wildcards.shard)],
            copick=copick_params(),
            extraction=extraction_params(),
            voxel_size_angstrom=config["density"]["voxel_size_angstrom"],
            seed=lambda wildcards: int(wildcards.seed),
        script:
            "../../scripts/extract_copick.py"

    rule copick_picks:
        """A variant's results back into the copick project: picks of user cryoavae, session
        the variant, one file per run and seen class under the overlay root."""
        input:
            config=config["copick"]["config"],
            annotated=f"{R}/models/{{variant}}/particles_annotated.star",
        output:
            f"{R}/models/{{variant}}/copick_picks.tsv",
        log:
            f"{R}/logs/copick_picks/{{variant}}.log",
        benchmark:
            f"{R}/benchmarks/copick_picks/{{variant}}.tsv"
        conda:
            "../../envs/cryoavae.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            runs=COPICK_RUNS,
            seen_classes=[c for c in CLASSES if c not in UNSEEN],
            voxel_spacing=config["copick"]["voxel_spacing"],
        script:
            "../../scripts/copick_picks.py"


if SOURCE in ("extract", "tomograms"):

    rule extract_subtomograms:
        """The study's particles cut out of one tomogram (one shard) at its pick list's positions:
        the user's tomograms (extract), or the study's simulated ones at their (jittered) picks.
        """
        input:
            unpack(extraction_inputs),
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
            extraction=extraction_params(),
            seed=lambda wildcards: int(wildcards.seed),
        script:
            "../../scripts/extract_subtomograms.py"


if SOURCE != "star":

    rule collect_particles:
        """All shards in one STAR table (rows point into the shard stacks)."""
        input:
            stars=expand(
                f"{R}/particles/shard_{{shard}}.star", shard=SHARDS, allow_missing=True
            ),
            stacks=expand(
                f"{R}/particles/shard_{{shard}}.mrcs", shard=SHARDS, allow_missing=True
            ),
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
