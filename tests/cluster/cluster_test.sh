#!/usr/bin/env bash
# vdp on a real Slurm cluster of two hosts made on this machine (tests/cluster/cluster.sh): munged,
# slurmctld and two slurmd from Debian's slurm-wlm, each host with its own network stack, address,
# hostname and /etc/hosts, so ranks on different hosts talk TCP as on real nodes.
#   tests/cluster/cluster_test.sh REPO BUILD_DIR
# Checks, from the repository's own launch/slurm.sbatch and launch/vdp-run:
#   1. sbatch on 2 nodes x 2 tasks (srun --mpi=pmix): completes, reports each rank's host, and its
#      weights equal the same job under mpirun on one host and the full batch in one process;
#   2. preemption: SIGUSR1 to the job's ranks mid-run -> checkpoint, exit 5, the script requeues the
#      job, it resumes with --resume auto and ends with the uninterrupted job's weights, bit for bit;
#   3. a rank on node2 killed (SIGKILL) -> the job ends within seconds, naming the task and host;
#   4. a rank on node2 stopped (SIGSTOP) with --timeout 5 -> the job ends within the timeout plus a
#      few seconds, naming the rank that did not arrive; Slurm says FAILED;
#   5. mpirun across the two hosts (launch/vdp-run -H node1:2,node2:2, an rsh agent that enters the
#      other host, Open MPI on TCP) equals the full batch;
#   6. after tear-down, no process and no namespace of the test is left.
# Exit 77 (skipped) where it cannot run: not root, no Slurm/MUNGE (launch/setup.sh installs them), no
# network or mount namespaces.
set -u
repo=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
py=${VDP_PYTHON:-}
skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "a Slurm cluster with network namespaces needs root"
for tool in munged slurmctld slurmd srun sbatch scontrol ip nsenter unshare; do
  command -v $tool >/dev/null || skip "$tool is not installed (launch/setup.sh installs slurm-wlm, munge, iproute2)"
done
[ -n "$py" ] || skip "VDP_PYTHON (Python with torch, to compare weight files) is not set"
probe=vdpcprobe$$
ip netns add $probe 2>/dev/null || skip "cannot make a network namespace here (ip netns add failed)"
ip netns del $probe
unshare --uts --mount --propagation private true 2>/dev/null || skip "cannot make UTS and mount namespaces here"

fails=0 passes=0
check() { if eval "$2"; then passes=$((passes + 1)); echo "PASS: $1"; else echo "FAIL: $1"; fails=$((fails + 1)); fi; }
elapsed() { echo "$(( ($(date +%s%N) - $1) / 1000000 ))" | awk '{printf "%.1f", $1 / 1000}'; }
# Slurm and MUNGE processes (not zombies: those are gone, waiting for pid 1 to reap them).
daemons() { ps -eo pid=,stat=,comm= | awk '$2 !~ /^Z/ && $3 ~ /^(slurmctld|slurmd|slurmstepd|munged)$/ { printf "%s ", $1 }'; }
before=$(daemons)

# This folder is the cluster's shared file system (as the repository and the build are).
work=$(mktemp -d "$build/cluster.XXXXXX")
. "$repo/tests/cluster/cluster.sh"
# The container image that tests/container/container_test.sh builds, if this machine has it: mounted
# before the hosts are made, so that every host's mount namespace sees it.
image=localhost/vdp ctr="" img_root=""
finish() {
  cluster_down
  if [ -n "$ctr" ]; then podman umount "$ctr" >/dev/null 2>&1; podman rm -f "$ctr" >/dev/null 2>&1; fi
  rm -rf "$work"
}
trap finish EXIT
trap 'echo "interrupted"; exit 130' INT TERM
if command -v podman >/dev/null && podman image exists $image 2>/dev/null; then
  ctr=$(podman create $image 2>/dev/null) && img_root=$(podman mount "$ctr" 2>/dev/null) || img_root=""
  podman image inspect $image --format '{{range .Config.Env}}{{println .}}{{end}}' | grep . >"$work/image.env"
  img_workdir=$(podman image inspect $image --format '{{.Config.WorkingDir}}')
  img_made=$(podman image inspect $image --format '{{.Created}}' | cut -c1-19)
fi
t0=$(date +%s%N)
cluster_up "$work/cluster" || { echo "FAIL: the cluster did not start"; echo "cluster: 1 failed"; exit 1; }
echo "cluster up in $(elapsed $t0) s"

job=$work/job
mkdir -p "$job"
cd "$job"
cat >small.ini <<'EOF'
[data]
dataset = regression
samples = 1000
[model]
model = mlp
dtype = float64
[batch]
global-batch = 256
micro-batch = 8
epochs = 100000
max-steps = 1200
[optim]
optimizer = adam
lr = 0.001
EOF
export VDP_REPO=$repo VDP_TRAIN=$build/vdp-train VDP_DEVICE=cpu VDP_CONFIG=$job/small.ini
# The script's #SBATCH lines are for 2 nodes x 4 GPUs; this cluster has 2 CPUs per node and no GPU.
sb=(sbatch --parsable --nodes=2 --ntasks-per-node=2 --cpus-per-task=1 --gpus-per-node=0 "$repo/launch/slurm.sbatch")
compare() { "$py" "$repo/tests/ckpt/compare_weights.py" "$@"; }
state() { on_head scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'; }
restarts() { on_head scontrol show job "$1" 2>/dev/null | sed -n 's/.*Restarts=\([0-9]*\).*/\1/p'; }
# wait_state ID SECONDS STATE...: until the job is in one of the states (0), or the time is up (1).
wait_state() {
  local id=$1 n=$(($2 * 10)) s; shift 2
  for _ in $(seq 1 $n); do
    s=$(state "$id")
    for want in "$@"; do [ "$s" = "$want" ] && return 0; done
    sleep 0.1
  done
  echo "job $id is $s, not $* after $((n / 10)) s"; return 1
}
# wait_line FILE REGEX SECONDS
wait_line() { for _ in $(seq 1 $(($3 * 10))); do grep -qE "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done; return 1; }
out() { grep -v '^epoch ' "vdp-$1.out"; }   # the job's output without its per-epoch lines
# procs_on_nodes NAME [N...]: pids of the processes called NAME on nodes N (default both).
procs_on_nodes() {
  local name=$1 n p nodes; shift
  nodes=("$@"); [ $# -gt 0 ] || nodes=(1 2)
  for n in "${nodes[@]}"; do
    for p in $(ip netns pids "$(cl_ns_of_node $n)" 2>/dev/null); do
      [ "$(cat /proc/$p/comm 2>/dev/null)" = "$name" ] && echo -n "$p "
    done
  done
}
# A vdp-train rank's pid on node N (the last one listed).
rank_pid() { local p; p=$(procs_on_nodes vdp-train "$1"); p=${p% }; echo "${p##* }"; }

# --- 1. sbatch, 2 nodes x 2 tasks ------------------------------------------------------------------
t=$(date +%s%N)
id=$(VDP_CHECKPOINT_DIR=$job/ckpt1 on_head "${sb[@]}" --save-weights "$job/slurm.safetensors")
wait_state "$id" 120 COMPLETED FAILED CANCELLED TIMEOUT >/dev/null
echo "sbatch job $id: $(state "$id") in $(elapsed $t) s (2 nodes x 2 tasks, 1200 steps)"
out "$id" | sed 's/^/  | /'
check "the job completes" "[ '$(state "$id")' = COMPLETED ]"
check "each rank reports its host: node1 (ranks 0-1), node2 (ranks 2-3)" \
  "grep -q '^hosts: node1 (ranks 0-1), node2 (ranks 2-3)$' vdp-$id.out"
t=$(date +%s%N)
"$repo/launch/vdp-run" -n 4 "$job/small.ini" --device cpu --save-weights "$job/onehost.safetensors" >onehost.out 2>&1
echo "the same job under mpirun on one host ($(hostname)): exit $?, $(elapsed $t) s"
"$build/vdp-train" "$job/small.ini" --device cpu --save-weights "$job/full.safetensors" >full.out 2>&1
check "srun on 2 hosts = mpirun on one host, bit for bit ($(compare --exact slurm.safetensors onehost.safetensors 2>&1 | tail -1))" \
  "compare --exact slurm.safetensors onehost.safetensors >/dev/null"
check "srun on 2 hosts (W=4, K=8) = the full batch in one process, float64 <= 1e-10 ($(compare --rtol 1e-10 slurm.safetensors full.safetensors 2>&1 | tail -1))" \
  "compare --rtol 1e-10 slurm.safetensors full.safetensors >/dev/null"

# --- 2. Preemption: SIGUSR1 to the ranks (what --signal=USR1@120 sends), requeue, resume -------------
id=$(VDP_CHECKPOINT_DIR=$job/ckpt2 on_head "${sb[@]}" --save-weights "$job/preempted.safetensors")
wait_line "vdp-$id.out" '^epoch 40/' 120 || echo "job $id did not reach epoch 40: $(state "$id")"
t=$(date +%s%N)
on_head scancel --signal=USR1 "$id"
# Slurm holds a requeued job for about 2 minutes (EligibleTime), time for the nodes to clean up
# the stopped steps. The test waits only for that clean-up (no step daemon left on the nodes: a
# step of the same id still there makes the new one fail), then lets the job start at once, as an
# administrator's `scontrol update StartTime=now` does.
for _ in $(seq 1 600); do [ "$(restarts "$id")" = 1 ] && [ "$(state "$id")" = PENDING ] && break; sleep 0.1; done
for _ in $(seq 1 600); do [ -z "$(procs_on_nodes slurmstepd)" ] && break; sleep 0.1; done
echo "job $id stopped and requeued in $(elapsed $t) s: $(on_head scontrol show job "$id" | grep -oE '(JobState|Reason|EligibleTime)=[^ ]*' | tr '\n' ' ')"
on_head scontrol update JobId="$id" StartTime=now
wait_state "$id" 120 COMPLETED FAILED CANCELLED TIMEOUT >/dev/null
echo "job $id: $(state "$id"), restarts $(restarts "$id"), $(elapsed $t) s from the signal"
out "$id" | sed 's/^/  | /'
# Rank 0 names SIGUSR1, or "a signal to another rank" when another rank's signal came first.
stop_step=$(sed -nE 's/.*stopped by (SIGUSR1|a signal to another rank) after step ([0-9]+);.*/\2/p' "vdp-$id.out" | head -1)
check "every rank stopped at one window boundary with a checkpoint (step ${stop_step:-none})" "[ -n '$stop_step' ]"
check "the ranks exited 5 and the script requeued the job" \
  "grep -q 'Exited with exit code 5' vdp-$id.out && grep -q 'requeueing job $id' vdp-$id.out && [ '$(restarts "$id")' = 1 ]"
check "the requeued job resumed at that step" "grep -q 'resuming from .*step-0*$stop_step at step $stop_step\$' vdp-$id.out"
check "the requeued job completes" "[ '$(state "$id")' = COMPLETED ]"
check "preempted + resumed = uninterrupted, bit for bit ($(compare --exact preempted.safetensors slurm.safetensors 2>&1 | tail -1))" \
  "compare --exact preempted.safetensors slurm.safetensors >/dev/null"

# signal_a_rank SIGNAL CKPT [vdp-train options...]: starts an endless job, sends SIGNAL to a rank on
# node2 once it trains, waits for the job to end; sets id, victim, rank (its SLURM_PROCID), secs.
signal_a_rank() {
  local sig=$1 ckpt=$2 t; shift 2
  id=$(VDP_CHECKPOINT_DIR=$job/$ckpt on_head "${sb[@]}" --max-steps 1000000 "$@")
  wait_line "vdp-$id.out" '^epoch 20/' 120
  victim=$(rank_pid 2)
  rank=$(tr '\0' '\n' <"/proc/$victim/environ" | sed -n 's/^SLURM_PROCID=//p')
  t=$(date +%s%N)
  kill -"$sig" "$victim"
  wait_state "$id" 60 FAILED COMPLETED CANCELLED TIMEOUT NODE_FAIL >/dev/null
  secs=$(elapsed $t)
  echo "SIG$sig to rank $rank (pid $victim) on node2 ($*): job $id $(state "$id") after $secs s"
  out "$id" | grep -E 'srun: error|vdp-train:' | sed 's/^/  | /'
}

# --- 3. A rank on node2 killed --------------------------------------------------------------------
signal_a_rank KILL ckpt3
check "the job ends within 15 s of the kill ($secs s) and Slurm says FAILED" \
  "awk 'BEGIN { exit !($secs < 15) }' && [ '$(state "$id")' = FAILED ]"
check "the output names the killed task and its host" "grep -qE 'srun: error: node2: task $rank: Killed' vdp-$id.out"

# --- 4. A rank on node2 stopped, --timeout 5 ------------------------------------------------------
signal_a_rank STOP ckpt4 --timeout 5
# Two cases, by where the stop lands. Before the collective (most often), the ranks that arrived
# name the one that did not and abort the job: timeout + about 2 s. Inside the transfer, after every
# rank arrived, MPI cannot say which peer is silent; each rank's watchdog ends it, and Slurm's
# SIGTERM wakes the stopped rank, which is killed after KillWait (5 s here): timeout + about 5 s.
check "the job ends within the timeout + 6 s ($secs s) and Slurm says FAILED" \
  "awk 'BEGIN { exit !($secs < 11) }' && [ '$(state "$id")' = FAILED ]"
# (A rank still at the barrier may then name those that already gave up inside the transfer, as
# Slurm's SIGCONT lets the stopped rank answer its query: MPI cannot tell who is silent there.)
if grep -q 'during the transfer' "vdp-$id.out"; then
  check "the stop landed inside a transfer: every other rank's watchdog says so" \
    "[ \$(grep -c 'timed out after 5 s (--timeout) inside .*a rank stopped or died during the transfer' vdp-$id.out) -ge 1 ]"
else
  check "vdp names the rank that did not arrive (rank $rank)" "grep -qE 'timed out after 5 s .*rank\(s\) $rank did not arrive' vdp-$id.out"
fi
check "the stopped rank is gone" "! kill -0 $victim 2>/dev/null"

# --- 5. mpirun across the two hosts ----------------------------------------------------------------
t=$(date +%s%N)
VDP_CLUSTER_NODES="node1=$(cl_node_pid 1) node2=$(cl_node_pid 2)" OMPI_MCA_plm_rsh_agent=$repo/tests/cluster/netns-rsh \
  OMPI_MCA_pml=ob1 OMPI_MCA_btl=tcp,self,vader OMPI_MCA_btl_tcp_if_include=$cl_net.0/24 OMPI_MCA_oob_tcp_if_include=$cl_net.0/24 \
  on_node 1 timeout 120 "$repo/launch/vdp-run" -n 4 -H node1:2,node2:2 "$job/small.ini" --device cpu \
  --save-weights "$job/mpirun.safetensors" >mpirun.out 2>&1
rc=$?
echo "mpirun from node1 across node1:2,node2:2: exit $rc in $(elapsed $t) s"
grep -v '^epoch ' mpirun.out | sed 's/^/  | /'
check "mpirun across 2 hosts: ranks on node1 and node2" "[ $rc = 0 ] && grep -q '^hosts: node1 (ranks 0-1), node2 (ranks 2-3)$' mpirun.out"
check "mpirun across 2 hosts (W=4, TCP) = the full batch, float64 <= 1e-10 ($(compare --rtol 1e-10 mpirun.safetensors full.safetensors 2>&1 | tail -1))" \
  "compare --rtol 1e-10 mpirun.safetensors full.safetensors >/dev/null"

# --- 5b. The container image under the scheduler ----------------------------------------------------
if [ -n "$img_root" ]; then
  t=$(date +%s%N)
  on_head timeout 180 srun --nodes=2 --ntasks-per-node=2 --mpi=pmix --kill-on-bad-exit=1 \
    "$repo/tests/cluster/in-image" "$img_root" "$work/image.env" "$img_workdir" "$work" \
    vdp-train "$job/small.ini" --device cpu --save-weights "$job/image.safetensors" >image.out 2>&1
  rc=$?
  echo "srun of the image's vdp-train (image made $img_made) on node1 and node2: exit $rc in $(elapsed $t) s"
  grep -v '^epoch ' image.out | sed 's/^/  | /'
  check "the image under srun on 2 hosts: W=4 equals the full batch, float64 <= 1e-10 ($(compare --rtol 1e-10 image.safetensors full.safetensors 2>&1 | tail -1))" \
    "[ $rc = 0 ] && grep -q 'W=4 ranks (mpi)' image.out && compare --rtol 1e-10 image.safetensors full.safetensors >/dev/null"
else
  echo "not run: the container image under srun (no image $image here: tests/container/container_test.sh builds it)"
fi

# --- 6. Tear-down ----------------------------------------------------------------------------------
cd "$build"
ns_prefix=$cl_ns_prefix
t=$(date +%s%N)
cluster_down
echo "torn down in $(elapsed $t) s"
left() {
  local now p
  now=$(daemons)
  for p in $now; do case " $before " in *" $p "*) ;; *) echo -n "$p($(cat /proc/$p/comm 2>/dev/null)) " ;; esac; done
}
# A step daemon's last moments after its job: give it a few seconds.
for _ in $(seq 1 100); do [ -z "$(left)" ] && break; sleep 0.1; done
check "no Slurm or MUNGE process of the test is left (left: $(left))" "[ -z '$(left)' ]"
check "no namespace of the test is left" "! ip netns list | grep -q '^$ns_prefix-'"
finish
trap - EXIT
[ -z "$ctr" ] || check "the image's container is removed and unmounted" "! podman container exists $ctr && ! grep -qF ' $img_root ' /proc/mounts"
check "nothing of the test is mounted" "! grep -qF ' $work' /proc/mounts"
echo "cluster: $passes passed, $fails failed ($(elapsed $t0) s)"
[ "$fails" = 0 ]
