"""The SLURM profile and the checks of the real-SLURM test, without a SLURM cluster (fast)."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PROFILE = REPO / "profiles" / "slurm"
TEST_PROFILE = REPO / "tests" / "slurm" / "profile"
SLURM_DIR = REPO / "tests" / "slurm"
DEFAULT_MIN_JOB_AGE_S = 300  # SLURM's default MinJobAge


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def profile() -> dict:
    return load(PROFILE / "config.yaml")


@pytest.fixture(scope="module")
def check_run():
    spec = importlib.util.spec_from_file_location("check_run", SLURM_DIR / "check_run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_profile_uses_the_slurm_executor_with_squeue_status(profile):
    assert profile["executor"] == "slurm"
    assert profile["slurm-status-command"] == "squeue"
    # The plugin swaps squeue for sacct (which hangs without accounting) unless the cluster's
    # MinJobAge >= 3 x the initial wait; the profile must fit SLURM's default MinJobAge.
    assert 3 * profile["slurm-init-seconds-before-status-checks"] <= DEFAULT_MIN_JOB_AGE_S
    assert profile["retries"] >= 1 and profile["jobs"] >= 1


def test_only_training_asks_for_a_gpu(profile):
    """The training rule asks for training.devices GPUs; the profile does not override it."""
    for resources in profile.get("set-resources", {}).values():
        assert not {"gpu", "gres", "gpu_model"} & set(resources or {})
    assert not {"gpu", "gres", "gpu_model"} & set(profile["default-resources"])
    train = (REPO / "workflow" / "rules" / "train.smk").read_text()
    assert 'gpu=lambda wildcards: training_params(wildcards)["devices"],' in train
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        if smk.name != "train.smk":
            assert "gpu" not in smk.read_text(), smk.name


def test_site_knobs_are_documented_not_set(profile):
    """The shipped profile runs on any cluster's default partition; sites uncomment knobs."""
    text = (PROFILE / "config.yaml").read_text()
    for knob in ("slurm_partition", "slurm_account", "gpu_model", "constraint", "slurm-qos"):
        assert re.search(rf"^\s*#\s+{knob}:", text, re.MULTILINE), knob
    resources = {
        **profile["default-resources"],
        **profile.get("set-resources", {}).get("train_model", {}),
    }
    assert not {"slurm_partition", "slurm_account", "gpu_model", "constraint"} & set(resources)
    readme = (PROFILE / "README.md").read_text()
    for knob in ("slurm_partition", "slurm_account", "gpu_model", "constraint", "qos"):
        assert knob in readme, knob


def test_group_jobs_stay_small(profile):
    """A group job asks for the sum of its side-by-side members: keep it a modest request."""
    rules = "".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    for rule, group in profile["groups"].items():
        block = re.search(rf"^rule {rule}:\n(.*?)(?=^rule |\Z)", rules, re.MULTILINE | re.DOTALL)
        assert block, rule
        threads = int(re.search(r"threads: (\d+)", block.group(1)).group(1))
        mem_mb = int(re.search(r"mem_mb=(\d+)", block.group(1)).group(1))
        components = profile["group-components"][group]
        assert 1 <= components and components * threads <= 8 and components * mem_mb <= 16000


def test_test_cluster_keeps_jobs_long_enough_for_squeue(profile):
    conf = (SLURM_DIR / "slurm.conf.in").read_text()
    min_job_age = int(re.search(r"^MinJobAge=(\d+)$", conf, re.MULTILINE).group(1))
    overlay = load(TEST_PROFILE / "config.yaml")
    for layer in (profile, overlay):
        assert min_job_age >= 3 * layer["slurm-init-seconds-before-status-checks"]
    assert "Gres=gpu:@GPUS@" in conf and "GresTypes=gpu" in conf
    assert "AccountingStorageType=accounting_storage/none" in conf


def test_profile_by_name_after_documented_install(tmp_path):
    """`snakemake --profile slurm` resolves once linked into the user's config folder."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    config_home = tmp_path / "xdg"
    (config_home / "snakemake").mkdir(parents=True)
    (config_home / "snakemake" / "slurm").symlink_to(PROFILE)
    env = {**os.environ, "XDG_CONFIG_HOME": str(config_home)}
    cmd = [str(BIN / "snakemake"), "--profile", "slurm", "-n", "-s", str(REPO / "Snakefile")]
    cmd += ["--configfile", str(REPO / "tests" / "data" / "tiny.yaml")]
    cmd += ["--directory", str(tmp_path / "work")]
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert "Using profile" in out and "slurm" in out
    assert re.search(r"Group job structures", out)
    train = out[out.index("rule train_model:") :]
    assert "gpu=1" in train.split("\n\n")[0]


def test_script_is_valid_bash_and_has_help():
    script = SLURM_DIR / "run_slurm_test.sh"
    assert os.access(script, os.X_OK)
    subprocess.run(["bash", "-n", str(script)], check=True)
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True)
    assert "--smoke" in result.stdout and "--keep" in result.stdout


PLAN = """Job stats:
job              count
-------------  -------
prepare              2
train_model          1
all                  1
total                4
"""
# Two `prepare` jobs ran as one group job (Snakemake names it by a UUID), training on its own.
SCONTROL = (
    "JobId=11 JobName=cryoavae_r1 JobState=COMPLETED ExitCode=0:0 "
    "Comment=rule_prep NumCPUs=1 AllocTRES=cpu=1,mem=500M,node=1\n"
    "JobId=13 JobName=cryoavae_r1 JobState=COMPLETED ExitCode=0:0 "
    "Comment=rule_train_model_wildcards_avae NumCPUs=2 TresPerJob=gres:gpu:1 "
    "AllocTRES=cpu=2,mem=1G,node=1,gres/gpu=1\n"
    "JobId=9 JobName=cryoavae_other JobState=FAILED ExitCode=1:0 Comment=rule_x\n"
)
LOG = (
    "SLURM run ID: cryoavae_r1\n"
    "Job 688e4361-b1af-58ec-a8aa-4e2ff617577e has been submitted with SLURM jobid 11 (log: a).\n"
    "Job 1 has been submitted with SLURM jobid 13 (log: c).\n"
    "localrule all:\n"
)


def write_slurm_logs(folder: Path, jobs: list[list[str]]) -> Path:
    """One SLURM log per job, each naming its rules as the plugin's two Snakemake layers do."""
    for k, rules in enumerate(jobs):
        path = folder / f"job_{k}" / f"{k}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"rule {r}:\n    jobid: 0\nlocalrule {r}:\n" for r in rules))
    return folder


def test_planned_jobs_and_scontrol_parsing(check_run):
    assert check_run.planned_jobs(PLAN) == {"prepare": 2, "train_model": 1, "all": 1}
    jobs = check_run.parse_scontrol(SCONTROL)
    assert [j["JobId"] for j in jobs] == ["11", "13", "9"]
    assert check_run.rule_of(jobs[1]["Comment"]) == "train_model"
    assert check_run.rule_of("rule_all") == "all"
    assert [check_run.asks_for_gpu(j) for j in jobs] == [False, True, False]


def test_check_passes_a_complete_run(check_run, tmp_path):
    logs = write_slurm_logs(tmp_path, [["prepare", "prepare"], ["train_model"]])
    assert check_run.check(PLAN, LOG, SCONTROL, logs, {"train_model"}, {"all"}) == []


def test_check_catches_a_job_run_outside_slurm(check_run, tmp_path):
    logs = write_slurm_logs(tmp_path, [["prepare"], ["train_model"]])
    log = LOG + "localrule prepare:\n"
    problems = check_run.check(PLAN, log, SCONTROL, logs, {"train_model"}, {"all"})
    assert any("prepare ran on the submit host" in p for p in problems)


def test_check_catches_a_training_job_without_gpu(check_run, tmp_path):
    logs = write_slurm_logs(tmp_path, [["prepare", "prepare"], ["train_model"]])
    scontrol = SCONTROL.replace(" TresPerJob=gres:gpu:1", "").replace(",gres/gpu=1", "")
    problems = check_run.check(PLAN, LOG, scontrol, logs, {"train_model"}, {"all"})
    assert any("13" in p and "did not ask for a GPU" in p for p in problems)


def test_check_catches_a_failed_or_missing_job(check_run, tmp_path):
    logs = write_slurm_logs(tmp_path, [["prepare", "prepare"], ["train_model"]])
    scontrol = SCONTROL.replace("JobId=11 JobName=cryoavae_r1 JobState=COMPLETED ExitCode=0:0", "")
    problems = check_run.check(PLAN, LOG, scontrol, logs, {"train_model"}, {"all"})
    assert any("submitted SLURM jobs" in p for p in problems)
    timeout = "JobState=TIMEOUT ExitCode=0:15 Comment=rule_prep"
    scontrol = SCONTROL.replace("JobState=COMPLETED ExitCode=0:0 Comment=rule_prep", timeout)
    problems = check_run.check(PLAN, LOG, scontrol, logs, {"train_model"}, {"all"})
    assert problems == ["SLURM job 11 ended TIMEOUT 0:15"]
