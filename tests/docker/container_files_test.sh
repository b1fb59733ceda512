#!/usr/bin/env bash
# The container files' static checks, beside tests/container/container_test.sh (which builds the
# image and runs vdp in it): every file the Dockerfile copies exists, its build step is
# launch/setup.sh, the Apptainer definition bootstraps from the Docker image, the programs they
# name are the ones `cmake --install` puts in bin/, the Apptainer %test command (Apptainer itself
# is not packaged for Debian here) passes against this build, and the launchers parse and print
# sane commands.
set -u
repo=$1 build=$2
fails=0 passes=0
check() { if eval "$2"; then passes=$((passes + 1)); else echo "FAIL: $1"; fails=$((fails + 1)); fi; }

df=$repo/docker/Dockerfile def=$repo/docker/vdp.def
while read -r src; do
  check "Dockerfile copies '$src', which is missing" "[ -e '$repo/$src' ]"
done < <(sed -n 's/^COPY \([^-][^ ]*\) .*/\1/p' "$df")
check "Dockerfile build stage must run launch/setup.sh" "grep -q '&& launch/setup.sh' '$df'"
check "vdp.def must bootstrap from the Docker image (one recipe)" "grep -q '^Bootstrap: oci-archive' '$def'"
check "Dockerfile must be multi-stage with a runtime stage" "[ \$(grep -c '^FROM ' '$df') -ge 2 ] && grep -q 'AS runtime' '$df'"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/opt" >/dev/null
check "ENTRYPOINT names a program cmake --install provides" \
  "[ -x \"$work/opt/bin/\$(sed -n 's/^ENTRYPOINT \[\"\([^\"]*\)\".*/\1/p' '$df')\" ]"
testcmd=$(sed -n '/^%test/,/^%/p' "$def" | grep 'vdp-train' | sed 's/^ *//')
check "the Apptainer %test command passes" "PATH='$work/opt/bin':\$PATH $testcmd >/dev/null"

for f in "$repo"/launch/*.sh "$repo"/launch/vdp-run "$repo"/launch/slurm.sbatch; do
  check "$f has a shell syntax error" "bash -n '$f'"
done
dry=$(VDP_TRAIN="$work/opt/bin/vdp-train" "$repo/launch/vdp-run" -n 3 --dry --global-batch 64)
check "vdp-run -n 3 --dry: '$dry'" "[[ '$dry' == *'-np 3'* && '$dry' == *'--global-batch 64'* && '$dry' == *OMP_NUM_THREADS=* ]]"
if [ "$(id -u)" = 0 ]; then check "vdp-run adds --allow-run-as-root for root" "[[ '$dry' == *--allow-run-as-root* ]]"; fi
check "vdp-run refuses -n 0" "! VDP_TRAIN='$work/opt/bin/vdp-train' '$repo/launch/vdp-run' -n 0 --dry 2>/dev/null"
check "vdp-run runs a job" "VDP_TRAIN='$work/opt/bin/vdp-train' '$repo/launch/vdp-run' -n 2 --dataset regression --model mlp --samples 64 --global-batch 16 --micro-batch 4 --max-steps 2 --quiet >/dev/null 2>&1"
check "launch/train.sh refuses a missing config" "! '$repo/launch/train.sh' /nonexistent.ini 2>/dev/null"
echo "container files and launchers: $passes passed, $fails failed"
[ "$fails" -eq 0 ]
