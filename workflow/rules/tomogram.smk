# particle_source: tomograms: simulated tomograms, one a shard, then the particles cut out of
# each at its (optionally jittered) picks, into the same particles/shard_<k>.{mrcs,star} as
# every other source, so that collect_particles and everything after it are unchanged.
if SOURCE == "tomograms":

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
            tomograms=config["tomograms"],
            voxel_size_angstrom=config["density"]["voxel_size_angstrom"],
            box_size_px=config["extraction"]["box_size_px"],
            seed=config["seed"],
        script:
            "../../scripts/simulate_tomogram.py"

    rule extract_subtomograms:
        """The study's particles cut out of one simulated tomogram at its (jittered) picks."""
        input:
            tomogram=f"{R}/tomograms/{{shard}}/tomogram.mrc",
            particles=f"{R}/tomograms/{{shard}}/particles.star",
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
            # no false positives here: evaluation scores the study's own classes only
            extraction={
                **{k: v for k, v in config["extraction"].items() if k != "tomograms"},
                "false_positive_fraction": 0.0,
            },
            seed=config["seed"],
        script:
            "../../scripts/extract_subtomograms.py"

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
            extraction={
                k: v for k, v in config["extraction"].items() if k != "tomograms"
            },
            seed=config["seed"],
        script:
            "../../scripts/extract_subtomograms.py"

    rule plot_tomogram_particles:
        """A few extracted subtomograms of every class (central slices), across the tomograms."""
        input:
            stars=expand(f"{R}/particles/shard_{{shard}}.star", shard=SHARDS),
            stacks=expand(f"{R}/particles/shard_{{shard}}.mrcs", shard=SHARDS),
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
            seed=config["seed"],
        script:
            "../../scripts/plot_tomogram_particles.py"
