# The one place that reads and validates the config and builds targets and rule params.
import re
import sys
from pathlib import Path

from cryoavae.core.config import (
    canonical_order,
    class_names,
    classes_from_structures,
    config_source,
    load_study_file,
    model_settings,
    particle_microscope,
    particle_wedge,
    recentre_source,
    unseen_classes,
    validate_config,
    variant_sections,
)
from cryoavae.core.copick_config import structure_ids, study_runs
from cryoavae.core.errors import InputError

try:
    # Snakemake has already read the files; read them again strictly, so that a repeated key or
    # an alias bomb is refused before anything walks the config.
    for configfile_path in workflow.configfiles:
        load_study_file(configfile_path)
    validate_config(config, source=config_source(workflow.configfiles))
except InputError as error:
    # one line and exit status 1: the user's to fix, not a traceback
    print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
    sys.exit(1)

# Keys in a fixed order, so that rule params (and with them Snakemake's rerun decisions) depend
# on the settings alone, not on the order they were written in.
_canonical = canonical_order(config)
config.clear()
config.update(_canonical)

STUDY = config["study"]
# What the seeds share (structures, maps, the prior, the seeds' summary) lives in S; everything
# a seed changes (particles, models, inference, evaluation) in R, one folder per seed.
S = f"results/{STUDY}"
SEEDS = list(config["seeds"]) or [config["seed"]]
R = f"{S}/seed{{seed}}"
CLASSES = class_names(config)
UNSEEN = unseen_classes(config)
VARIANTS = list(config["variants"])
SOURCE = config["particle_source"]
# a copick study's runs, one shard each (shard k reads run COPICK_RUNS[k])
COPICK_RUNS = study_runs(config) if SOURCE == "copick" else []
N_SHARDS = {
    "simulate": config["simulation"]["n_shards"],
    "extract": len(config["extraction"]["tomograms"]),
    "characters": 1,
    "star": 0,  # the user's own files, read in place
    "tomograms": config["tomograms"]["n_tomograms"],  # one simulated tomogram a shard
    "copick": len(COPICK_RUNS),
}[SOURCE]
SHARDS = [f"{k:03d}" for k in range(N_SHARDS)]
STRUCTURES = CLASSES if classes_from_structures(config) else []
# the PDB ID behind a class named otherwise (a copick object's pdb_id); else the class's name
STRUCTURE_IDS = structure_ids(config) if SOURCE == "copick" else {}
THREADS = config["resources"]["threads"]
INFERENCE_JOBS = config["inference"]["jobs"]
MATCHING = config["orientation"]["method"] == "template_matching"


wildcard_constraints:
    structure="|".join(STRUCTURES) if STRUCTURES else "^$",
    variant="|".join(VARIANTS),
    shard=r"\d{3}",
    job=r"\d+",
    seed="|".join(str(seed) for seed in SEEDS),
    # the configured names only: "<set>_relion5.star" is no set's annotated "<set>.star"
    particle_set="|".join(map(re.escape, config["apply"]["particle_sets"])) or "^$",


def structure_params(wildcards):
    """Where a class's structure comes from: a PDB ID to fetch or the user's own file."""
    s = config["structures"]
    fetch = {
        k: s[k] for k in ("cache_dir", "offline", "archive_url", "timeout_s", "retries")
    }
    if fetch["cache_dir"] is None:
        fetch["cache_dir"] = "results/cache/pdb"
    return {
        "pdb_id": (
            None
            if wildcards.structure in s["files"]
            else STRUCTURE_IDS.get(wildcards.structure, wildcards.structure)
        ),
        "local_file": s["files"].get(wildcards.structure),
        "resources_dir": str(Path(workflow.basedir) / s["resources_dir"]),
        "fetch": fetch,
    }


def per_seed_path(wildcards, *parts):
    """A path in the folder of the job's seed (an input function's paths must be complete)."""
    return "/".join([R.format(seed=wildcards.seed), *map(str, parts)])


def extraction_inputs(wildcards):
    """The tomogram and pick list of one extraction shard: the user's (extract) or the
    simulated tomogram's own ground truth (tomograms)."""
    if SOURCE == "tomograms":
        return {
            "tomogram": per_seed_path(
                wildcards, "tomograms", wildcards.shard, "tomogram.mrc"
            ),
            "particles": per_seed_path(
                wildcards, "tomograms", wildcards.shard, "particles.star"
            ),
        }
    entry = config["extraction"]["tomograms"][int(wildcards.shard)]
    return {"tomogram": entry["tomogram"], "particles": entry["particles"]}


def extraction_params(for_study=True):
    """The extraction settings. The study's own particles keep their false positives (class
    background, split unseen: never trained on; evaluation scores them as junk, apart from the
    unseen classes), as a real pick list brings them."""
    return {k: v for k, v in config["extraction"].items() if k != "tomograms"}


def atom_selection():
    s = config["structures"]
    return {
        k: s[k] for k in ("atoms", "keep_waters", "keep_ions", "assembly", "chains")
    }


def model_params(wildcards):
    """The variant's model section, with the particles' wedge when it measures it."""
    return model_settings(config, wildcards.variant)


def training_params(wildcards):
    return variant_sections(config, wildcards.variant)[1]


def structure_files():
    return expand(f"{S}/structures/{{structure}}.cif.gz", structure=STRUCTURES)


def map_files():
    return expand(f"{S}/maps/{{structure}}.mrc", structure=STRUCTURES)


def symmetry_files():
    """maps/symmetry.json when evaluation.symmetry names a point group, else nothing."""
    return [f"{S}/maps/symmetry.json"] if config["evaluation"]["symmetry"] else []


def particle_stacks():
    """The stacks the study made (a STAR study reads the user's own files in place)."""
    return expand(
        f"{R}/particles/shard_{{shard}}.mrcs", shard=SHARDS, allow_missing=True
    )


def variant_particles(wildcards):
    """The particle table a variant trains on, embeds and matches: the study's, or the same
    particles moved onto the centres another variant's matching found
    (training.recentre_from)."""
    origin = recentre_source(config, wildcards.variant)
    if origin is None:
        return per_seed_path(wildcards, "particles", "particles.star")
    return per_seed_path(wildcards, "particles", f"recentred_{origin}.star")


RECENTRE_ORIGINS = sorted({recentre_source(config, v) for v in VARIANTS} - {None})


def source_particles():
    """The particle table results are written back onto: the user's STAR, or ours."""
    if SOURCE == "star":
        return config["star"]["particles"]
    return f"{R}/particles/particles.star"


def inference_parts(kind):
    """The inference jobs' tables of one kind (encoded, matched), in job order."""
    return expand(
        f"{R}/models/{{variant}}/inference/{kind}_{{job}}.tsv",
        job=range(INFERENCE_JOBS),
        allow_missing=True,
    )


def wedge_tilt_max_deg():
    """The particles' missing wedge (missing_wedge), None where they have none."""
    return particle_wedge(config)


def simulation_params():
    return {**config["simulation"], "wedge_tilt_max_deg": wedge_tilt_max_deg()}


def tomogram_params():
    return {
        **config["tomograms"],
        "tilt_max_deg": config["missing_wedge"]["tilt_max_deg"],
    }


def orientation_params():
    """The orientation section, with the wedge the particles are matched and averaged through."""
    return {**config["orientation"], "wedge_tilt_max_deg": wedge_tilt_max_deg()}


def angles_from():
    """Where the particles' angles come from when they are not a simulation's truth: averages
    and summaries name it (None: simulated, the truth)."""
    return {
        "star": "the STAR file's angles",
        "extract": "the pick lists' angles",
        "copick": "the copick picks' orientations",
    }.get(SOURCE)


def relion5_optics():
    """The tilt series behind the particles' positions, for the RELION 5 particle set's optics
    block: known for simulated tomograms (their voxel is the tilt series' pixel), else None
    (your tomograms: RELION 5 takes the optics from your tomograms.star)."""
    if SOURCE != "tomograms":
        return None
    keys = ("voltage_kv", "cs_mm", "amplitude_contrast")
    return {
        "tilt_series_pixel_size_angstrom": config["density"]["voxel_size_angstrom"],
        **{key: config["tomograms"][key] for key in keys},
    }


# Particles that sit in a tomogram (or may: your own STAR file) get a RELION 5 particle set.
RELION5 = SOURCE in ("extract", "tomograms", "star")


def microscope():
    """The CTF's microscope when the study simulated one (else None: no CTF to match)."""
    return particle_microscope(config)


def benchmark_files():
    """The benchmark file (time, peak memory, I/O) of every job the study runs before its
    summary, for the resource table."""
    shared = f"{S}/benchmarks"
    files = expand(f"{shared}/fetch_structure/{{s}}.tsv", s=STRUCTURES)
    files += expand(f"{shared}/make_density_map/{{s}}.tsv", s=STRUCTURES)
    affinity = (
        "compute_glyph_affinity" if SOURCE == "characters" else "compute_affinity"
    )
    files.append(f"{shared}/{affinity}.tsv")
    b = f"{R}/benchmarks"  # the seed's own jobs; {seed} is the summary's
    if SOURCE == "simulate":
        files += expand(
            f"{b}/simulate_subtomograms/{{k}}.tsv", k=SHARDS, allow_missing=True
        )
    elif SOURCE == "extract":
        files += expand(
            f"{b}/extract_subtomograms/{{k}}.tsv", k=SHARDS, allow_missing=True
        )
    elif SOURCE == "tomograms":
        files += expand(
            f"{b}/simulate_tomogram/{{k}}.tsv", k=SHARDS, allow_missing=True
        )
        files += expand(
            f"{b}/extract_subtomograms/{{k}}.tsv", k=SHARDS, allow_missing=True
        )
        files.append(f"{b}/plot_tomogram_particles.tsv")
    elif SOURCE == "copick":
        files += expand(f"{b}/extract_copick/{{k}}.tsv", k=SHARDS, allow_missing=True)
    elif SOURCE == "characters":
        files.append(f"{b}/generate_characters.tsv")
    else:
        files.append(f"{b}/import_star_particles.tsv")
    if SOURCE != "star":
        files.append(f"{b}/collect_particles.tsv")
    for rule_name in (
        "train_model",
        "embed_particles",
        "evaluate_model",
        "annotate_particles",
        "average_particles",
    ):
        files += expand(f"{b}/{rule_name}/{{v}}.tsv", v=VARIANTS, allow_missing=True)
    inference = ["encode_particles"] + (["match_particles"] if MATCHING else [])
    files += expand(
        f"{b}/{{rule_name}}/{{v}}_{{job}}.tsv",
        rule_name=inference,
        v=VARIANTS,
        job=range(INFERENCE_JOBS),
        allow_missing=True,
    )
    if MATCHING:
        files += expand(f"{b}/fit_references/{{v}}.tsv", v=VARIANTS, allow_missing=True)
    if SOURCE == "copick":
        files += expand(f"{b}/copick_picks/{{v}}.tsv", v=VARIANTS, allow_missing=True)
    files += expand(
        f"{b}/recentre_particles/{{v}}.tsv", v=RECENTRE_ORIGINS, allow_missing=True
    )
    sets = list(config["apply"]["particle_sets"])
    files += expand(
        f"{b}/apply_model/{{v}}/{{p}}.tsv", v=VARIANTS, p=sets, allow_missing=True
    )
    return files


def configfile_args():
    """The --configfile arguments of this study, as a command line gives them."""
    return " ".join(
        f"--configfile {config_source([path])}" for path in workflow.configfiles
    )


def study_command():
    """The command that runs this study, as results tables quote it."""
    return f"snakemake --cores 2 {configfile_args()}".strip()


def print_run_summary():
    """The console's last lines after a successful run: each variant's scores, where the unseen
    classes landed and the files to open (cryoavae.evaluate.summary.run_summary), in place of
    hundreds of job blocks. Nothing is printed before an evaluation exists (a partial target),
    and no error here may fail a run that succeeded."""
    command = f"snakemake --report {S}/report.html {configfile_args()}".strip()
    try:
        # imported only here: the evaluation's packages would slow every parse of the workflow
        from cryoavae.evaluate.summary import run_summary

        lines = run_summary(S, STUDY, SEEDS, VARIANTS, command)
    except Exception as error:  # a summary is a courtesy, the run has succeeded
        lines = [f"cryoavae: no summary of this run ({type(error).__name__}: {error})"]
    if lines:
        print("\n".join(lines), file=sys.stderr)


def model_outputs(name):
    """``name`` of every variant, in the folder of the job's seed."""
    return expand(
        f"{R}/models/{{variant}}/{name}", variant=VARIANTS, allow_missing=True
    )


def copick_params():
    """The copick section as the extraction reads it (the runs go one per shard)."""
    return {k: v for k, v in config["copick"].items() if k != "runs"}


def copick_outputs():
    """Each variant's picks written back into a copick project (their manifests)."""
    return model_outputs("copick_picks.tsv") if SOURCE == "copick" else []


def all_targets():
    per_seed = [
        *copick_outputs(),
        *model_outputs("metrics.json"),
        *model_outputs("umap.png"),
        *model_outputs("particles_annotated.star"),
        *model_outputs("class_averages.tsv"),
        *(model_outputs("particles_relion5.star") if RELION5 else []),
        f"{R}/summary.tsv",
        f"{R}/provenance.json",
        *expand(
            f"{R}/applied/{{variant}}/{{particle_set}}.tsv",
            variant=VARIANTS,
            particle_set=list(config["apply"]["particle_sets"]),
            allow_missing=True,
        ),
        *expand(
            f"{R}/applied/{{variant}}/{{particle_set}}_relion5.star",
            variant=VARIANTS,
            particle_set=list(config["apply"]["particle_sets"]) if RELION5 else [],
            allow_missing=True,
        ),
    ]
    return [
        f"{S}/affinity/affinity.csv",
        f"{S}/affinity/affinity_heatmap.png",
        *expand(per_seed, seed=SEEDS),
        f"{S}/summary.md",
    ]
