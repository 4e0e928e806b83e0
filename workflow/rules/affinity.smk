if SOURCE == "characters":

    rule compute_glyph_affinity:
        """The characters' prior: rotation-maximised glyph cross-correlation, made PSD."""
        output:
            csv=f"{S}/affinity/affinity.csv",
            heatmap=report(
                f"{S}/affinity/affinity_heatmap.png",
                caption="../report/affinity_heatmap.rst",
                category="1. Affinity prior",
            ),
            info=f"{S}/affinity/affinity_info.json",
        log:
            f"{S}/logs/compute_glyph_affinity.log",
        benchmark:
            f"{S}/benchmarks/compute_glyph_affinity.tsv"
        conda:
            "../../envs/cryoavae.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            characters=config["characters"],
            affinity=config["affinity"],
        script:
            "../../scripts/compute_glyph_affinity.py"

else:

    rule compute_affinity:
        """The class x class prior A (SOAP, map cross-correlation or the user's CSV), made PSD."""
        input:
            structures=structure_files(),
            maps=map_files(),
        output:
            csv=f"{S}/affinity/affinity.csv",
            heatmap=report(
                f"{S}/affinity/affinity_heatmap.png",
                caption="../report/affinity_heatmap.rst",
                category="1. Affinity prior",
            ),
            info=f"{S}/affinity/affinity_info.json",
        log:
            f"{S}/logs/compute_affinity.log",
        benchmark:
            f"{S}/benchmarks/compute_affinity.tsv"
        conda:
            "../../envs/cryoavae.yaml"
        threads: 1  # a second thread did not shorten it; it runs beside the simulation
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            class_names=CLASSES,
            affinity=config["affinity"],
            selection=atom_selection(),
            seed=config["seed"],
        script:
            "../../scripts/compute_affinity.py"
