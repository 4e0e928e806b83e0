#!/usr/bin/env bash
# Run a study through `snakemake --profile profiles/slurm` on a throw-away single-node SLURM.
#
# Stands up munged, slurmctld and slurmd on localhost (Debian's packages, no systemd, no
# accounting database, fake GPUs through GRES on copies of /dev/null), runs the tiny test study through
# the SLURM profile, checks that every job ran as a SLURM job, that the training job asked for a
# GPU and that all outputs are present, then stops the daemons by their PIDs and removes what it
# wrote, also on failure or Ctrl-C.
#
# Needs root (apt-get, daemons, /etc/slurm). Documented in profiles/slurm/README.md.
#
#   tests/slurm/run_slurm_test.sh                  # the tiny study (tests/data/tiny.yaml)
#   tests/slurm/run_slurm_test.sh --smoke          # a 3-rule chain, no cryoavae code
#   tests/slurm/run_slurm_test.sh --configfile F   # another study
#   tests/slurm/run_slurm_test.sh --keep           # keep the temp folder (logs, results)
#
# Environment: CRYOAVAE_VENV (default <repo>/.venv) holds snakemake and
# snakemake-executor-plugin-slurm; SLURM_TEST_TIMEOUT_S (default 600) bounds the snakemake run;
# SLURM_TEST_SNAKEMAKE_ARGS adds arguments to the snakemake calls (e.g. "--workflow-profile none");
# SLURM_TEST_GPUS (default 2) fake GPUs; SLURM_TEST_DEVICES (default 2) training.devices, so
# that the training job asks for that many GPUs and trains on that many ranks (gloo on the CPU:
# the GPUs are fake).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$REPO/tests/slurm"
VENV="${CRYOAVAE_VENV:-$REPO/.venv}"
TIMEOUT_S="${SLURM_TEST_TIMEOUT_S:-600}"
GPUS="${SLURM_TEST_GPUS:-2}"
DEVICES="${SLURM_TEST_DEVICES:-2}"
CONFIGFILE="$REPO/tests/data/tiny.yaml"
SMOKE=0
KEEP=0
MARKER="# cryoavae throw-away test cluster"
CONF_DIR=/etc/slurm
START_S=$SECONDS

log() { printf '[slurm-test %4ds] %s\n' "$((SECONDS - START_S))" "$*"; }
die() {
    log "FAILED: $*"
    exit 1
}

while (($#)); do
    case "$1" in
    --smoke) SMOKE=1 ;;
    --keep) KEEP=1 ;;
    --configfile)
        CONFIGFILE="$(realpath "$2")"
        shift
        ;;
    -h | --help)
        awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
        exit 0
        ;;
    *) die "unknown argument '$1'; accepted: --smoke, --keep, --configfile FILE, --help" ;;
    esac
    shift
done

# ---------------------------------------------------------------------------------------------
# Preflight: packages, one run at a time, no foreign SLURM configuration.
[[ $(id -u) -eq 0 ]] || die "needs root (apt-get, SLURM daemons, $CONF_DIR); run it as root or in a container"
SNAKEMAKE="$VENV/bin/snakemake"
PYTHON="$VENV/bin/python"
[[ -x $SNAKEMAKE ]] || die "no snakemake at $SNAKEMAKE; set CRYOAVAE_VENV or pip install -e '.[workflow]'"
"$PYTHON" -c "import snakemake_executor_plugin_slurm" 2>/dev/null ||
    die "snakemake-executor-plugin-slurm is missing in $VENV; pip install -e '.[workflow]'"

missing=()
for tool in slurmctld slurmd sbatch munged; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if ((${#missing[@]})); then
    log "installing slurmctld slurmd slurm-client munge (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
fi
log "$(slurmctld -V), $(munged -V 2>&1 | awk '{print $1}'), $("$SNAKEMAKE" --version | sed 's/^/snakemake /')," \
    "plugin $("$PYTHON" -c 'import importlib.metadata as m; print(m.version("snakemake-executor-plugin-slurm"))')"

LOCK=/run/lock/cryoavae-slurm-test.lock
[[ -d /run/lock ]] || LOCK=/tmp/cryoavae-slurm-test.lock
exec 9>"$LOCK"
flock -n 9 || die "another run of this script holds $LOCK"

mkdir -p "$CONF_DIR"
for f in slurm.conf gres.conf; do
    if [[ -e $CONF_DIR/$f ]] && ! grep -q "^$MARKER" "$CONF_DIR/$f"; then
        die "$CONF_DIR/$f exists and is not ours; this script would overwrite a real SLURM configuration"
    fi
done

# ---------------------------------------------------------------------------------------------
# Cleanup: cancel jobs, stop daemons by PID, remove our configuration and temp folder.
SM_PID=""
TMP="$(mktemp -d /tmp/cryoavae-slurm.XXXXXX)"
chmod 755 "$TMP"
STATE="$TMP/state"
WORK="$TMP/work"
mkdir -p "$STATE/ctld" "$STATE/spool" "$TMP/munge" "$TMP/dev" "$WORK"
chmod 711 "$TMP/munge"

stop_pid_file() { # name pid_file: TERM, wait up to 10 s, then KILL; only if the PID is that daemon
    local name="$1" pid_file="$2" pid
    [[ -s $pid_file ]] || return 0
    pid="$(cat "$pid_file")"
    [[ -d /proc/$pid && $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do
        [[ -d /proc/$pid ]] || break
        sleep 0.2
    done
    if [[ -d /proc/$pid ]]; then kill -KILL "$pid" 2>/dev/null || true; fi
    log "stopped $name (PID $pid)"
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM HUP
    if [[ -n $SM_PID ]] && kill -0 "$SM_PID" 2>/dev/null; then
        # timeout relays SIGINT to snakemake, which then cancels its SLURM jobs.
        log "interrupting snakemake (PID $SM_PID)"
        kill -INT "$SM_PID"
        for _ in $(seq 40); do
            kill -0 "$SM_PID" 2>/dev/null || break
            sleep 0.5
        done
        kill -KILL -- "-$SM_PID" 2>/dev/null
    fi
    if [[ -s $STATE/slurmctld.pid ]]; then
        jobs_left="$(squeue -h -o %i 2>/dev/null)"
        if [[ -n $jobs_left ]]; then
            log "cancelling jobs still queued: $(echo "$jobs_left" | tr '\n' ' ')"
            echo "$jobs_left" | xargs -r scancel 2>/dev/null
            for _ in $(seq 20); do
                [[ -z $(squeue -h -t PD,R,CG -o %i 2>/dev/null) ]] && break
                sleep 0.5
            done
        fi
    fi
    stop_pid_file slurmd "$STATE/slurmd.pid"
    stop_pid_file slurmctld "$STATE/slurmctld.pid"
    stop_pid_file munged "$TMP/munge/munged.pid"
    for f in slurm.conf gres.conf; do
        if [[ -e $CONF_DIR/$f ]] && grep -q "^$MARKER" "$CONF_DIR/$f"; then rm -f "$CONF_DIR/$f"; fi
    done
    if ((KEEP)); then
        log "kept $TMP (daemon logs in $STATE, results in $WORK)"
    else
        rm -rf "$TMP"
    fi
    if ((rc == 0)); then log "PASSED"; else log "FAILED (exit $rc)"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

show_daemon_logs() {
    for f in "$TMP/munge/munged.log" "$STATE/slurmctld.log" "$STATE/slurmd.log"; do
        [[ -s $f ]] && {
            echo "----- tail of $f"
            tail -n 20 "$f"
        }
    done
}

# ---------------------------------------------------------------------------------------------
# munge: a private key and socket.
MUNGE_SOCKET="$TMP/munge/munge.socket"
dd if=/dev/urandom of="$TMP/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$TMP/munge/munge.key"
munged --force --socket="$MUNGE_SOCKET" --key-file="$TMP/munge/munge.key" \
    --pid-file="$TMP/munge/munged.pid" --log-file="$TMP/munge/munged.log" \
    --seed-file="$TMP/munge/munged.seed" || {
    show_daemon_logs
    die "munged did not start"
}
munge -n -S "$MUNGE_SOCKET" | unmunge -S "$MUNGE_SOCKET" >/dev/null || die "munge round trip failed"
log "munged up (PID $(cat "$TMP/munge/munged.pid"))"

# ---------------------------------------------------------------------------------------------
# slurm.conf and gres.conf: memory from `slurmd -C`, declared 10% low (else the node drains); at
# least 4 CPUs declared (config_overrides), so that the profile's groups of up to 4 structures
# (one CPU each) fit on a small CI machine; two free ports (no clash with any other SLURM or a
# leftover daemon).
NODE="$(hostname -s)"
DETECTED="$(slurmd -C | head -n 1 | tr ' ' '\n')"
CPUS="$(echo "$DETECTED" | sed -n 's/^CPUs=//p')"
CPUS="$((CPUS > 4 ? CPUS : 4))"
HARDWARE="CPUs=$CPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$CPUS ThreadsPerCore=1 "
MEMORY_MB="$(($(echo "$DETECTED" | sed -n 's/^RealMemory=//p') * 9 / 10))"
# Fake GPUs: character devices like /dev/null (slurmd needs one distinct device file per GPU).
for ((i = 0; i < GPUS; i++)); do mknod "$TMP/dev/fakegpu$i" c 1 3; done
GPU_FILES="$TMP/dev/fakegpu$( ((GPUS == 1)) && echo 0 || echo "[0-$((GPUS - 1))]")"
read -r CTLD_PORT SLURMD_PORT < <("$PYTHON" - <<'EOF'
import socket

sockets = [socket.socket() for _ in range(2)]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in sockets))
EOF
)
fill() {
    sed -e "s|@NODE@|$NODE|g" -e "s|@CTLD_PORT@|$CTLD_PORT|g" -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" \
        -e "s|@MUNGE_SOCKET@|$MUNGE_SOCKET|g" -e "s|@STATE@|$STATE|g" \
        -e "s|@HARDWARE@|$HARDWARE|g" -e "s|@MEMORY_MB@|$MEMORY_MB|g" -e "s|@GPUS@|$GPUS|g" \
        -e "s|@GPU_FILES@|$GPU_FILES|g" "$1"
}
# The plugin's job step drops every SLURM_* variable (SLURM_CONF included) before its in-job
# srun, so the configuration must be at the default path.
fill "$HERE/slurm.conf.in" >"$CONF_DIR/slurm.conf"
fill "$HERE/gres.conf.in" >"$CONF_DIR/gres.conf"
log "wrote $CONF_DIR/slurm.conf: node $NODE ${HARDWARE}RealMemory=$MEMORY_MB, ports $CTLD_PORT/$SLURMD_PORT"

slurmctld -i || {
    show_daemon_logs
    die "slurmctld did not start"
}
slurmd || {
    show_daemon_logs
    die "slurmd did not start"
}
for _ in $(seq 60); do
    [[ $(sinfo -h -o %T 2>/dev/null) == idle ]] && break
    sleep 1
done
[[ $(sinfo -h -o %T 2>/dev/null) == idle ]] || {
    sinfo -N -l
    show_daemon_logs
    die "node $NODE is not idle after 60 s"
}
log "cluster up: slurmctld PID $(cat "$STATE/slurmctld.pid"), slurmd PID $(cat "$STATE/slurmd.pid")"
sinfo -N -o '  node %N  state %T  cpus %c  memory_mb %m  gres %G  partition %P'

# ---------------------------------------------------------------------------------------------
# The run: the SLURM profile, with tests/slurm/profile layered on it for pace and kept logs.
if ((SMOKE)); then
    STUDY_ARGS=(--snakefile "$HERE/smoke/Snakefile")
    log "study: smoke chain ($HERE/smoke/Snakefile)"
else
    printf 'training: {devices: %d}\n' "$DEVICES" >"$TMP/devices.yaml" # merged onto the study
    STUDY_ARGS=(--configfile "$CONFIGFILE" "$TMP/devices.yaml")
    log "study: $CONFIGFILE, training.devices $DEVICES"
fi
read -r -a EXTRA_ARGS <<<"${SLURM_TEST_SNAKEMAKE_ARGS:-}"
SM=("$SNAKEMAKE" --profile profiles/slurm --profile tests/slurm/profile "${STUDY_ARGS[@]}"
    --directory "$WORK" "${EXTRA_ARGS[@]}")
cd "$REPO"
"${SM[@]}" --dry-run --quiet rules >"$TMP/plan.txt" 2>&1 || {
    cat "$TMP/plan.txt"
    die "dry run failed"
}
log "command: ${SM[*]}"
# Snakemake ignores SIGTERM while it waits for remote jobs: -k sends SIGKILL 15 s later. In the
# background, so that Ctrl-C reaches the trap (timeout runs in its own process group).
timeout -k 15 "$TIMEOUT_S" "${SM[@]}" >"$TMP/snakemake.log" 2>&1 &
SM_PID=$!
run_rc=0
wait "$SM_PID" || run_rc=$?
SM_PID=""
log "snakemake exited with $run_rc; its submissions:"
grep -E "SLURM run ID|has been submitted with SLURM jobid|localrule " "$TMP/snakemake.log" |
    sed 's/^/  /' || true
if ((run_rc != 0)); then
    echo "----- tail of the snakemake log"
    tail -n 60 "$TMP/snakemake.log"
    show_daemon_logs
    ((run_rc == 124 || run_rc == 137)) && die "snakemake ran past ${TIMEOUT_S} s"
    die "snakemake failed"
fi

# ---------------------------------------------------------------------------------------------
# Checks. Finished jobs stay in slurmctld for MinJobAge (600 s), so scontrol still has them all.
RANK_CHECK=()
((SMOKE)) || RANK_CHECK=(--devices "$DEVICES" --results "$WORK/results")
scontrol show job -o >"$TMP/jobs.txt" 2>&1 || true
"$PYTHON" "$HERE/check_run.py" --plan "$TMP/plan.txt" --log "$TMP/snakemake.log" \
    --jobs "$TMP/jobs.txt" --slurm-logs "$WORK/.snakemake/slurm_logs" --gpu-rule train_model \
    --gpu-rule train "${RANK_CHECK[@]}" || die "checks of the SLURM jobs failed"

log "GPU request of the training jobs (scontrol show job -d):"
while read -r id; do
    scontrol show job -d "$id" | grep -E "JobId=|TresPerJob|JOB_GRES|NumCPUs" |
        sed 's/^ */    /' || true
done < <(grep -E 'Comment=rule_train(_model)?(_|\s)' "$TMP/jobs.txt" | grep -o 'JobId=[0-9]*' | cut -d= -f2)

log "slurmctld saw these submissions and allocations:"
grep -E "_slurm_rpc_submit_batch_job|sched: Allocate|_job_complete: JobId=[0-9]+ done" "$STATE/slurmctld.log" |
    sed 's/^/  /' | tail -n 60 || true

"${SM[@]}" --dry-run >"$TMP/after.txt" 2>&1 || {
    cat "$TMP/after.txt"
    die "dry run after the run failed"
}
grep -q "Nothing to be done" "$TMP/after.txt" || {
    cat "$TMP/after.txt"
    die "outputs missing or out of date after the run"
}
log "all outputs present and up to date (a dry run has nothing to do); files written:"
(cd "$WORK" && find . -path ./.snakemake -prune -o -type f -printf '  %8s  %p\n' | sort -k2)

if ((SMOKE)); then
    log "what the jobs saw (the GPU job gets CUDA_VISIBLE_DEVICES from SLURM):"
    sed 's/^/  /' "$WORK/done/report.txt"
else
    log "training device (a fake GPU: CUDA_VISIBLE_DEVICES is set, but there is no device):"
    if grep -rhE "CUDA|, device " "$WORK"/results/*/seed*/logs/train_model/ | sed 's/^/  /' | grep .; then
        :
    else
        log "WARNING: the training log says nothing about CUDA or the device"
    fi
fi
