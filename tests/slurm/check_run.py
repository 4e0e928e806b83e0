"""Checks of one `snakemake --profile profiles/slurm` run on the throw-away test cluster.

Called by run_slurm_test.sh after the run. Every job Snakemake planned (except rules without an
action, such as `all`) must have run inside a SLURM job of this run, every SLURM job of this run
must have completed, and the GPU rule's jobs, and only they, must have asked for a GPU. Evidence
comes from the dry run's plan, Snakemake's log, `scontrol show job -o` (finished jobs stay there
for MinJobAge) and the per-job SLURM logs. Standard library only.
"""

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

SUBMITTED = re.compile(r"Job (\S+) has been submitted with SLURM jobid (\d+)")
RUN_ID = re.compile(r"SLURM run ID: (\S+)")
LOCALRULE = re.compile(r"^\s*localrule (\w+):", re.MULTILINE)


def planned_jobs(plan: str) -> Counter:
    """Rule -> job count from the last 'Job stats' table of a dry run."""
    if "Job stats:" not in plan:
        return Counter()
    jobs = Counter()
    lines = plan.split("Job stats:")[-1].splitlines()
    start = next(
        (i for i, line in enumerate(lines) if re.fullmatch(r"-+\s+-+", line.strip())), None
    )
    for line in lines[start + 1 :] if start is not None else []:
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdigit() or fields[0] == "total":
            break
        jobs[fields[0]] = int(fields[1])
    return jobs


def parse_scontrol(text: str) -> list[dict[str, str]]:
    """`scontrol show job -o` (one job per line, KEY=VALUE fields) -> one dict per job."""
    jobs = []
    for line in text.splitlines():
        if not line.startswith("JobId="):
            continue
        fields = {}
        for token in line.split():
            key, sep, value = token.partition("=")
            if sep:
                fields[key] = value
        jobs.append(fields)
    return jobs


def rule_of(comment: str) -> str:
    """The plugin's job comment `rule_<name>[_wildcards_<...>]` -> `<name>`."""
    name = comment.removeprefix("rule_")
    return name.split("_wildcards_", 1)[0]


def asks_for_gpu(job: dict[str, str]) -> bool:
    """A GPU in the job's request (--gpus / --gres) or in what SLURM allocated to it."""
    requested = job.get("TresPerJob", "") + job.get("TresPerNode", "")
    return "gpu" in requested or "gres/gpu" in job.get("AllocTRES", job.get("TRES", ""))


def job_table(jobs: list[dict[str, str]]) -> str:
    """One line per SLURM job: what it ran, how it ended and what it asked for."""
    header = ("jobid", "rule", "state", "exit", "cpus", "mem", "time", "gpu")
    rows = [header]
    for j in sorted(jobs, key=lambda j: int(j["JobId"])):
        rows.append(
            (
                j["JobId"],
                rule_of(j.get("Comment", "?")),
                j.get("JobState", "?"),
                j.get("ExitCode", "?"),
                j.get("NumCPUs", "?"),
                j.get("MinMemoryNode", j.get("MinMemoryCPU", "?")),
                j.get("TimeLimit", "?"),
                "yes" if asks_for_gpu(j) else "no",
            )
        )
    widths = [max(len(row[k]) for row in rows) for k in range(len(header))]
    lines = ("  ".join(f"{v:<{w}}" for v, w in zip(row, widths, strict=True)) for row in rows)
    return "\n".join("  " + line.rstrip() for line in lines)


def rules_in_slurm_logs(log_dir: Path) -> Counter:
    """Rule -> how many times a SLURM job's log shows it executed in the job's step.

    The plugin's job script runs Snakemake, which logs `rule X:` and runs X through `srun` in a
    second Snakemake that logs `localrule X:`; that second line is the execution inside SLURM.
    """
    counts = Counter()
    for path in sorted(log_dir.rglob("*.log")):
        counts.update(LOCALRULE.findall(path.read_text(errors="replace")))
    return counts


def gpus_asked(job: dict[str, str]) -> int:
    """How many GPUs a job asked for (``--gpus=N`` shows as gres/gpu:N or gres/gpu=N)."""
    text = job.get("TresPerJob", "") + " " + job.get("TresPerNode", "")
    found = re.findall(r"gpu[:=](?:[A-Za-z0-9_-]+:)?(\d+)", text)
    return max(map(int, found), default=1 if "gpu" in text else 0)


def check_ranks(jobs: list[dict[str, str]], gpu_rules: set[str], devices: int, results: Path):
    """Every training job asked for ``devices`` GPUs and trained on ``devices`` ranks."""
    problems = []
    for j in jobs:
        if rule_of(j.get("Comment", "")) in gpu_rules and gpus_asked(j) != devices:
            problems.append(f"SLURM job {j['JobId']} asked for {gpus_asked(j)} GPUs, not {devices}")
    summaries = sorted(results.glob("*/seed*/models/*/train_summary.json"))
    if not summaries:
        problems.append(f"no train_summary.json under {results}")
    for path in summaries:
        ranks = json.loads(path.read_text()).get("ranks")
        print(f"  {path.relative_to(results)}: trained on {ranks} ranks")
        if ranks != devices:
            problems.append(f"{path} trained on {ranks} ranks, not {devices}")
    return problems


def check(
    plan: str,
    log: str,
    scontrol: str,
    slurm_logs: Path,
    gpu_rules: set[str],
    allowed_local: set[str],
    devices: int | None = None,
    results: Path | None = None,
) -> list[str]:
    """All problems found (empty: the run passed); prints a table of the run's SLURM jobs."""
    problems = []
    planned = planned_jobs(plan)
    if not planned:
        return ["no 'Job stats' table in the dry run's output"]
    ids = RUN_ID.findall(log)
    if len(ids) != 1:
        return [f"expected one 'SLURM run ID' in the snakemake log, found {ids}"]
    submitted = {slurm_id for _, slurm_id in SUBMITTED.findall(log)}
    jobs = [j for j in parse_scontrol(scontrol) if j.get("JobName") == ids[0]]
    seen = {j["JobId"] for j in jobs}

    print(job_table(jobs))

    if not submitted:
        problems.append("the snakemake log shows no job submitted to SLURM")
    if submitted != seen:
        problems.append(
            f"submitted SLURM jobs {sorted(submitted)} != jobs of run {ids[0]} in scontrol "
            f"{sorted(seen)}"
        )
    for j in jobs:
        if j.get("JobState") != "COMPLETED" or j.get("ExitCode") != "0:0":
            problems.append(f"SLURM job {j['JobId']} ended {j.get('JobState')} {j.get('ExitCode')}")

    local = Counter(LOCALRULE.findall(log))
    for name in set(local) - allowed_local:
        problems.append(f"rule {name} ran on the submit host, not as a SLURM job")
    expected = Counter({name: n for name, n in planned.items() if name not in local})
    ran = rules_in_slurm_logs(slurm_logs)
    if ran != expected:
        problems.append(
            f"jobs inside SLURM jobs {dict(sorted(ran.items()))} != planned "
            f"{dict(sorted(expected.items()))}"
        )
    print(f"  planned (not local): {dict(sorted(expected.items()))}")
    print(f"  run inside SLURM jobs: {dict(sorted(ran.items()))}")
    print(f"  run on the submit host: {dict(sorted(local.items()))}")

    gpu_planned = gpu_rules & set(planned)
    if not gpu_planned:
        problems.append(f"none of the GPU rules {sorted(gpu_rules)} is in the plan")
    for j in jobs:
        wants_gpu = rule_of(j.get("Comment", "")) in gpu_rules
        if wants_gpu and not asks_for_gpu(j):
            problems.append(f"SLURM job {j['JobId']} ({j.get('Comment')}) did not ask for a GPU")
        if asks_for_gpu(j) and not wants_gpu:
            problems.append(f"SLURM job {j['JobId']} ({j.get('Comment')}) asked for a GPU")
    if gpu_planned and not any(asks_for_gpu(j) for j in jobs):
        problems.append("no SLURM job of this run asked for a GPU")
    if devices is not None and results is not None:
        problems += check_ranks(jobs, gpu_rules, devices, results)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", type=Path, required=True, help="dry run output")
    parser.add_argument("--log", type=Path, required=True, help="snakemake log of the run")
    parser.add_argument("--jobs", type=Path, required=True, help="`scontrol show job -o` output")
    parser.add_argument("--slurm-logs", type=Path, required=True, help="the plugin's log folder")
    parser.add_argument("--gpu-rule", action="append", default=[], help="rule that needs a GPU")
    parser.add_argument("--allow-local", action="append", default=["all"], help="local rule")
    parser.add_argument("--devices", type=int, help="GPUs and ranks each training job must use")
    parser.add_argument("--results", type=Path, help="the run's results folder")
    args = parser.parse_args(argv)
    problems = check(
        args.plan.read_text(),
        args.log.read_text(errors="replace"),
        args.jobs.read_text(errors="replace"),
        args.slurm_logs,
        set(args.gpu_rule),
        set(args.allow_local),
        args.devices,
        args.results,
    )
    for problem in problems:
        print(f"  CHECK FAILED: {problem}")
    if not problems:
        print("  every planned job ran as a SLURM job; only the GPU rule asked for a GPU")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
