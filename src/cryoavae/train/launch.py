"""Running a training job on one process or on several (``training.devices`` × ``nodes``).

The rule script describes the job once (:class:`TrainingJob`) and calls :func:`launch`. One
device trains in the calling process, as always. Several start ``torchrun`` (PyTorch's own
launcher, ``python -m torch.distributed.run``): on one node ``--standalone`` with one process
per device; across nodes of a SLURM allocation one ``torchrun`` per node through ``srun``, meeting
at the allocation's first node. Each process runs ``python -m cryoavae.train.launch JOB.json``,
which joins the process group (:mod:`.distributed`) and calls :func:`~.run.train_model`; rank 0
logs to the rule's log and writes the outputs.

The inputs are checked in the calling process before anything starts, so a user's mistake
stays one line; a mistake found inside a rank is passed back the same way.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from cryoavae.affinity.io import read_affinity_csv
from cryoavae.core.atomic import write_text_atomic
from cryoavae.core.errors import InputError
from cryoavae.core.runlog import dump_json
from cryoavae.model.config import ModelConfig
from cryoavae.particles import ParticleImages, read_particle_table
from cryoavae.train.config import TrainingConfig

log = logging.getLogger(__name__)

RENDEZVOUS_PORT = 29500
ERROR_FILE = "launch_error.txt"  # a rank's one-line InputError, for the launching process


@dataclass(frozen=True)
class TrainingJob:
    """Everything one training job needs, as plain values (it travels as JSON to the ranks)."""

    particles: str  # the study's particle table (STAR)
    affinity: str  # the prior (CSV)
    class_names: list[str]
    model: dict  # the variant's model section
    training: dict  # the variant's training section
    seed: int
    checkpoint: str
    history: str
    summary: str
    work_dir: str
    threads: int
    log: str | None = None

    def inputs(self):
        """(table, images, affinity, ModelConfig, TrainingConfig), checked."""
        table = read_particle_table(self.particles)
        images = ParticleImages(table, self.particles)
        shape = images.shape
        model = ModelConfig.from_dict(
            {**self.model, "ndim": len(shape) - 1, "box_size_px": shape[-1]}
        )
        affinity = read_affinity_csv(self.affinity, self.class_names)
        return table, images, affinity, model, TrainingConfig.from_dict(self.training)


def launch(job: TrainingJob) -> dict:
    """Train ``job`` on ``devices × nodes`` processes; return the summary (also written)."""
    from cryoavae.train.run import check_training_inputs, train_model

    table, images, affinity, model, config = job.inputs()
    check_training_inputs(table, images, affinity, model, config)
    world = config.devices * config.nodes
    if world == 1:
        summary = train_model(
            table,
            images,
            affinity,
            model,
            config,
            job.seed,
            Path(job.checkpoint),
            Path(job.history),
            Path(job.work_dir),
            threads=job.threads,
        )
        write_text_atomic(job.summary, dump_json(summary))
        return summary
    work = Path(job.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    spec = work / "launch.json"
    write_text_atomic(spec, json.dumps(asdict(job), indent=2))
    (work / ERROR_FILE).unlink(missing_ok=True)
    command = _command(config, spec)
    log.info("training on %d processes (%d per node): %s", world, config.devices, " ".join(command))
    per_rank = max(1, job.threads // config.devices)
    env = {**os.environ, "OMP_NUM_THREADS": str(per_rank)}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        error = work / ERROR_FILE
        if error.exists():
            raise InputError(error.read_text().strip())
        raise RuntimeError(
            f"distributed training failed (exit {done.returncode}):\n{done.stderr[-6000:]}"
        )
    return json.loads(Path(job.summary).read_text())


def _command(config: TrainingConfig, spec: Path) -> list[str]:
    run = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={config.devices}"]
    worker = ["-m", "cryoavae.train.launch", str(spec)]
    if config.nodes == 1:
        return [*run, "--standalone", "--nnodes=1", *worker]
    head = _first_node()
    rendezvous = ["--rdzv-backend=c10d", f"--rdzv-endpoint={head}:{RENDEZVOUS_PORT}"]
    rendezvous.append(f"--rdzv-id={os.environ.get('SLURM_JOB_ID', 'cryoavae')}")
    srun = ["srun", f"--nodes={config.nodes}", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    return [*srun, *run, f"--nnodes={config.nodes}", *rendezvous, *worker]


def _first_node() -> str:
    """The first node of this SLURM allocation, where the ranks meet."""
    nodes = os.environ.get("SLURM_JOB_NODELIST")
    if not nodes or shutil.which("scontrol") is None:
        raise InputError(
            "training.nodes > 1 needs a SLURM allocation of that many nodes (run with "
            "--profile slurm); use training.devices for several GPUs of one node"
        )
    names = subprocess.run(
        ["scontrol", "show", "hostnames", nodes], capture_output=True, text=True, check=True
    )
    return names.stdout.split()[0]


def _die_with_parent() -> None:
    """End this rank when torchrun ends. torchrun starts its ranks in sessions of their own, so a
    kill of the job (``kill -9``, a cancelled Snakemake) would leave them training and writing;
    on Linux the kernel sends them SIGKILL when their parent goes (``PR_SET_PDEATHSIG``)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent went before the request took hold
        os._exit(1)


def _worker(spec: Path) -> int:
    """One rank of a distributed job (run by torchrun)."""
    from cryoavae.train.run import train_model

    _die_with_parent()
    job = TrainingJob(**json.loads(Path(spec).read_text()))
    rank = int(os.environ.get("RANK", "0"))
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if job.log:
        handlers.append(logging.FileHandler(job.log, mode="a"))
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"%(asctime)s %(levelname)s rank {rank} %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    try:
        table, images, affinity, model, config = job.inputs()
        threads = max(1, job.threads // config.devices)
        summary = train_model(
            table,
            images,
            affinity,
            model,
            config,
            job.seed,
            Path(job.checkpoint),
            Path(job.history),
            Path(job.work_dir),
            threads=threads,
        )
    except InputError as error:
        logging.getLogger("cryoavae").error("%s", error)
        write_text_atomic(Path(job.work_dir) / ERROR_FILE, " ".join(str(error).split()) + "\n")
        return 1
    if rank == 0:
        write_text_atomic(job.summary, dump_json(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(_worker(Path(sys.argv[1])))
