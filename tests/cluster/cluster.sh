# A Slurm cluster of two "hosts" on this machine, for tests/cluster/cluster_test.sh (sourced).
#
#   cluster_up DIR      starts munged, slurmctld (host "head") and two slurmd (hosts node1, node2), each
#                       daemon in its own network + UTS namespace; the three namespaces are joined by a
#                       bridge in head's namespace (10.213.7.0/24, nothing routed anywhere else).
#   cluster_down        stops every process in the namespaces, then the daemons, by pid; deletes the
#                       namespaces (and with them the links). Safe to call twice; the caller traps it.
#   on_node N CMD...    runs CMD on node N (1 or 2): its network and hostname.
#   on_head CMD...      runs CMD in the controller's namespace (sbatch, scontrol, squeue...).
#
# Everything lives in DIR: munge key and socket, slurm.conf, state, spool, logs. The file system is
# shared by all "hosts", as a cluster's shared file system would be.
cl_ns_prefix="vdpc$$"
cl_net=10.213.7
cl_pids=()   # daemons, in start order
cl_ns=()

cl_log() { echo "[cluster] $*"; }

# cl_start NS HOSTNAME LOGFILE CMD...: CMD in namespace NS with its own hostname and an /etc/hosts
# that names the cluster's hosts (bound in a private mount namespace), in the background; ip netns
# exec and unshare exec, so $! is CMD's pid. The mount lives and dies with the namespace. /tmp stays
# shared (the repository may live there): Slurm's per-host temporary files go to TmpFS, a folder per
# node, and Open MPI's carry the host name.
cl_start() {
  local ns=$1 host=$2 log=$3; shift 3
  ip netns exec "$ns" unshare --uts --mount --propagation private \
    sh -c 'hostname "$0" && mount --bind "$1" /etc/hosts && shift && exec "$@"' "$host" "$cl_dir/hosts" "$@" >"$log" 2>&1 &
  cl_pids+=($!)
}

# Namespaces left by a run of this test that was killed (SIGKILL cannot be trapped): their owner's
# pid is in their name. Their processes are stopped and the namespaces deleted.
cl_reap_stale() {
  local ns owner p
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^vdpc[0-9]+-' || true); do
    owner=${ns#vdpc}; owner=${owner%%-*}
    kill -0 "$owner" 2>/dev/null && continue
    cl_log "removing namespace $ns left by a killed run (pid $owner)"
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
}

cluster_up() {
  cl_dir=$1
  cl_reap_stale
  mkdir -p "$cl_dir"/{munge,state,spool/node1,spool/node2,tmp/node1,tmp/node2,log}
  chmod 700 "$cl_dir/munge"
  local head=$cl_ns_prefix-head
  for n in head node1 node2; do
    ip netns add "$cl_ns_prefix-$n" || return 1
    cl_ns+=("$cl_ns_prefix-$n")
    ip -n "$cl_ns_prefix-$n" link set lo up
  done
  ip -n "$head" link add br0 type bridge && ip -n "$head" addr add $cl_net.1/24 dev br0 && ip -n "$head" link set br0 up || return 1
  for i in 1 2; do
    ip -n "$head" link add "v$i" type veth peer name eth0 netns "$cl_ns_prefix-node$i" &&
      ip -n "$head" link set "v$i" master br0 && ip -n "$head" link set "v$i" up &&
      ip -n "$cl_ns_prefix-node$i" addr add "$cl_net.1$i/24" dev eth0 && ip -n "$cl_ns_prefix-node$i" link set eth0 up || return 1
  done

  printf '127.0.0.1 localhost\n%s.1 head\n%s.11 node1\n%s.12 node2\n' $cl_net $cl_net $cl_net >"$cl_dir/hosts"

  # MUNGE: a key of our own, a socket in DIR (slurm.conf's AuthInfo points Slurm at it).
  head -c 1024 /dev/urandom >"$cl_dir/munge/munge.key" && chmod 400 "$cl_dir/munge/munge.key"
  cl_munge_socket=$cl_dir/munge/munge.socket
  munged --foreground --force --socket="$cl_munge_socket" --key-file="$cl_dir/munge/munge.key" \
    --pid-file="$cl_dir/munge/munged.pid" --seed-file="$cl_dir/munge/seed" --log-file="$cl_dir/log/munged.log" \
    >"$cl_dir/log/munged.out" 2>&1 &
  cl_pids+=($!)

  export SLURM_CONF=$cl_dir/slurm.conf
  cat >"$SLURM_CONF" <<EOF
ClusterName=vdptest
SlurmctldHost=head($cl_net.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$cl_munge_socket
StateSaveLocation=$cl_dir/state
SlurmdSpoolDir=$cl_dir/spool/%n
TmpFS=$cl_dir/tmp/%n
SlurmctldPidFile=$cl_dir/slurmctld.pid
SlurmdPidFile=$cl_dir/slurmd-%n.pid
SlurmctldLogFile=$cl_dir/log/slurmctld.log
SlurmdLogFile=$cl_dir/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=pmix
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
JobRequeue=1
KillWait=5
MinJobAge=600
SlurmdTimeout=30
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName=node1 NodeAddr=$cl_net.11 CPUs=2 RealMemory=4000 State=UNKNOWN
NodeName=node2 NodeAddr=$cl_net.12 CPUs=2 RealMemory=4000 State=UNKNOWN
PartitionName=test Nodes=node1,node2 Default=YES MaxTime=INFINITE State=UP
EOF
  # Slurm 22.05's slurmd loads a cgroup plugin even with proctrack/linuxproc and task/none; its
  # autodetection fails on a hybrid layout (a tmpfs at /sys/fs/cgroup), so name the version.
  if [ -e /sys/fs/cgroup/cgroup.controllers ]; then echo "CgroupPlugin=cgroup/v2"; else echo "CgroupPlugin=cgroup/v1"; fi \
    >"$cl_dir/cgroup.conf"
  cl_start "$head" head "$cl_dir/log/slurmctld.out" slurmctld -D -i -f "$SLURM_CONF"
  for i in 1 2; do
    cl_start "$cl_ns_prefix-node$i" "node$i" "$cl_dir/log/slurmd-node$i.out" slurmd -D -N "node$i" -f "$SLURM_CONF"
  done
  # Both nodes idle, or the logs.
  local t
  for t in $(seq 1 60); do
    if [ "$(on_head sinfo -h -N -o '%N %t' 2>/dev/null | grep -c ' idle')" = 2 ]; then
      cl_log "up after ${t}s: $(on_head sinfo -h -N -o '%N:%t' | tr '\n' ' ')"
      return 0
    fi
    sleep 1
  done
  cl_log "the nodes did not come up in 60 s:"; on_head sinfo -N 2>&1; tail -n 20 "$cl_dir"/log/*
  return 1
}

cl_ns_of_node() { echo "$cl_ns_prefix-node$1"; }
# The pid of node N's slurmd (the 2nd and 3rd daemons after munged, slurmctld).
cl_node_pid() { echo "${cl_pids[$(($1 + 1))]}"; }
on_node() { local n=$1; shift; nsenter -t "$(cl_node_pid "$n")" -n -u -m --wd="$PWD" -- "$@"; }
on_head() { nsenter -t "${cl_pids[1]}" -n -u -m --wd="$PWD" -- "$@"; }

cluster_down() {
  [ ${#cl_ns[@]} -gt 0 ] || [ ${#cl_pids[@]} -gt 0 ] || return 0
  local ns p i
  # Jobs first: their processes (slurmstepd, ranks) live in the nodes' namespaces. Then the daemons,
  # slurmd before slurmctld before munged (slurmctld reaps its own slurmscriptd), then anything left.
  for ns in "${cl_ns[@]}"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do
      case " ${cl_pids[*]} " in *" $p "*) ;; *) [ "$ns" = "$cl_ns_prefix-head" ] || kill -KILL "$p" 2>/dev/null ;; esac
    done
  done
  for i in 2 3 1 0; do
    p=${cl_pids[$i]:-}
    [ -n "$p" ] || continue
    kill -TERM "$p" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
  done
  for ns in "${cl_ns[@]}"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
  done
  wait 2>/dev/null
  for ns in "${cl_ns[@]}"; do ip netns del "$ns" 2>/dev/null; done
  cl_pids=() cl_ns=()
}
