#!/usr/bin/env bash
# Builds vdp's image from docker/Dockerfile on a plain Debian base and runs vdp inside it.
#   tests/container/container_test.sh REPO
# The commands are docker/README.md's own (the base arguments are the only difference): a Debian
# 12 base made with debootstrap and imported into podman, `podman build --isolation=chroot`, then
# in the image's root file system (podman cannot start containers in this sandbox: crun cannot
# set rlimits or cgroups, so the root file system of a created container is mounted and entered
# with chroot, in a private mount namespace, with the image's environment and nothing of the
# host's): vdp-train --dry-run, a few training steps on the image's Fashion-MNIST, vdp-run --dry,
# and a 2-rank job under the image's mpirun. Exit 77 (skipped) without root, podman or debootstrap.
set -u
repo=$(cd "$1" && pwd)
for tool in podman debootstrap unshare chroot; do
  command -v $tool >/dev/null || { echo "SKIP: $tool is not installed (launch/setup.sh installs it)"; exit 77; }
done
[ "$(id -u)" = 0 ] || { echo "SKIP: building and entering images needs root here"; exit 77; }

base=localhost/vdp-debian-base image=localhost/vdp
fails=0 passes=0
check() { if eval "$2"; then passes=$((passes + 1)); echo "PASS: $1"; else echo "FAIL: $1"; fails=$((fails + 1)); fi; }
work=$(mktemp -d /var/tmp/vdp-container.XXXXXX)
ctr=""
cleanup() {
  if [ -n "$ctr" ]; then podman umount "$ctr" >/dev/null 2>&1; podman rm -f "$ctr" >/dev/null 2>&1; fi
  rm -rf "$work"
}
trap cleanup EXIT

# Can podman store an image at all here? (Where it cannot, e.g. a root file system that is not a
# mount point, which a chroot has: "remount /, flags: 0x44000: invalid argument", the test is
# skipped with podman's own reason rather than failed, before debootstrap spends minutes.)
mkdir -p "$work/probe" && echo probe >"$work/probe/probe"
probe_out=$(tar -C "$work/probe" -c . | podman import - localhost/vdp-probe-import 2>&1)
if [ $? != 0 ]; then
  echo "SKIP: podman cannot store an image on this machine: $(echo "$probe_out" | grep -v '^$' | tail -n 1)"
  exit 77
fi
podman rmi -f localhost/vdp-probe-import >/dev/null 2>&1

# 1. The base image (once per machine): Debian 12 minbase from the mirror the host uses.
if ! podman image exists $base; then
  # The first Debian archive apt uses here (deb822 "URIs:" lines, or "deb" lines), not a comment's.
  mirror=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
           awk '$1 == "URIs:" || $1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\//) { print $i; break } }' |
           grep -v -e security -e updates | head -1)
  mirror=${mirror:-http://deb.debian.org/debian}
  echo "making $base from $mirror"
  debootstrap --variant=minbase bookworm "$work/root" "$mirror" > "$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log"; echo "FAIL: debootstrap"; exit 1; }
  tar -C "$work/root" -c . | podman import - $base >/dev/null || { echo "FAIL: podman import"; exit 1; }
  rm -rf "$work/root"
fi

# Can podman build at all here? (Where it cannot, e.g. a root file system that is not a mount point,
# the test is skipped with podman's own reason rather than failed.)
probe_out=$(printf 'FROM %s\nRUN true\n' $base | podman build --isolation=chroot -q -t localhost/vdp-probe -f - "$work" 2>&1)
if [ $? != 0 ]; then
  echo "SKIP: podman cannot build an image on this machine: $(echo "$probe_out" | grep -v '^$' | tail -n 1)"
  exit 77
fi
podman rmi -f localhost/vdp-probe >/dev/null 2>&1

# 2. The image. The host's CA bundle goes in as a build secret (pip behind a re-signing proxy).
secret=()
[ -s /etc/ssl/certs/ca-certificates.crt ] && secret=(--secret id=ca-certificates,src=/etc/ssl/certs/ca-certificates.crt)
start=$(date +%s)
(cd "$repo" && podman build --isolation=chroot "${secret[@]}" \
   --build-arg BASE=$base --build-arg RUNTIME_BASE=$base -f docker/Dockerfile -t vdp .) > "$work/build.log" 2>&1
rc=$?
check "podman build (exit $rc; last lines above on failure)" "[ $rc = 0 ] || { tail -40 '$work/build.log'; false; }"
[ $rc = 0 ] || { echo "container: $fails failed"; exit 1; }
size=$(podman image inspect $image --format '{{.Size}}')
echo "image built in $(( $(date +%s) - start )) s, size $((size / 1000000)) MB"
# The build stage's layers (the compiler, LibTorch's whole environment, the build tree) are not
# kept: they would fill the disk run after run.
podman image prune -f >/dev/null 2>&1

# 3. Its root file system, entered with chroot under the image's own environment.
ctr=$(podman create $image) && root=$(podman mount "$ctr") || { echo "FAIL: podman create/mount"; exit 1; }
mapfile -t envs < <(podman image inspect $image --format '{{range .Config.Env}}{{println .}}{{end}}' | grep .)
workdir=$(podman image inspect $image --format '{{.Config.WorkingDir}}')
inside() {  # inside CMD...: runs CMD in the image (fresh /proc, /dev, /sys and /tmp; nothing else of the host's)
  unshare -m --propagation private bash -c '
    root=$1; shift
    mount --rbind /dev "$root/dev" && mount -t proc proc "$root/proc" && mount --rbind /sys "$root/sys" \
      && mount -t tmpfs tmpfs "$root/tmp" && mount -t tmpfs tmpfs "$root/dev/shm" || exit 99
    exec chroot "$root" /usr/bin/env -i "$@"' _ "$root" "${envs[@]}" HOME=/root \
      /bin/sh -c 'cd "$0" && exec "$@"' "$workdir" "$@"
}

check "the image has no compiler and no build tree" "[ ! -e '$root/usr/bin/g++' ] && [ ! -e '$root/usr/bin/cmake' ] && [ ! -e '$root/src' ]"
check "the image holds Fashion-MNIST (its own, not the host's)" "[ -s '$root/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz' ]"
out=$(inside vdp-train configs/fashion_mnist.ini --dry-run 2>&1); rc=$?
check "vdp-train --dry-run in the image (exit $rc): $(echo "$out" | tail -1)" "[ $rc = 0 ] && [[ \"\$out\" == *'W=1 m=32 K=4'* ]]"
out=$(inside vdp-train configs/fashion_mnist.ini --max-steps 3 --metrics '' 2>&1); rc=$?
check "vdp-train trains 3 steps on the image's Fashion-MNIST (exit $rc): $(echo "$out" | tail -1)" "[ $rc = 0 ] && [[ \"\$out\" == *'done: 3 steps'* ]]"
out=$(inside vdp-run -n 2 --dry configs/fashion_mnist.ini 2>&1); rc=$?
check "vdp-run --dry prints the mpirun line (exit $rc): $out" "[ $rc = 0 ] && [[ \"\$out\" == *mpirun*'-np 2'*vdp-train*fashion_mnist.ini* ]]"
out=$(inside vdp-run -n 2 configs/fashion_mnist.ini --max-steps 3 --metrics '' 2>&1); rc=$?
check "a 2-rank job under the image's mpirun (exit $rc): $(echo "$out" | tail -1)" "[ $rc = 0 ] && [[ \"\$out\" == *'W=2 m=32 K=2'* && \"\$out\" == *'done: 3 steps'* ]]"
echo "$out" | tail -4

# 4. The OCI archive the Apptainer definition bootstraps from (docker/vdp.def).
out=$(cd "$work" && podman save --format oci-archive -o vdp.oci.tar vdp 2>&1 && tar -tf vdp.oci.tar 2>&1); rc=$?
check "podman save --format oci-archive (exit $rc) gives an OCI layout" "[ $rc = 0 ] && [[ \"\$out\" == *index.json* && \"\$out\" == *oci-layout* ]]"
rm -f "$work/vdp.oci.tar"

# 5. docker/README.md shows these commands (the base arguments and the CA secret are the only difference).
for cmd in "debootstrap --variant=minbase bookworm" "podman import - localhost/vdp-debian-base" \
           "podman build --isolation=chroot" "-f docker/Dockerfile -t vdp ." "podman create vdp" "podman mount" \
           "podman save --format oci-archive -o vdp.oci.tar vdp"; do
  check "docker/README.md shows '$cmd'" "grep -q -F -- '$cmd' '$repo/docker/README.md'"
done
echo "container: $passes passed, $fails failed"
[ "$fails" -eq 0 ]
