#!/bin/sh
# The engine comparison, run inside the nested harness's outer VM (or on a
# host whose KVM runs Linux): vessel's kvm engine and its qemu engine
# (`-M microvm -accel kvm`) boot the same kernel and vessel guest initramfs
# for the same container. Per run and engine it prints one line
#   BENCH engine=E run=N first_line_ms= agent_ready_ms= first_output_ms= exit_deleted_ms= rss_kib= pss_kib= threads= guest_mib=
# which `vessel-bench vm-engines` turns into a table. Times come from
# /proc/uptime (10 ms steps); only ratios of the two engines mean anything
# under TCG.
# Env: VESSEL, NESTED_KERNEL, BENCH_RUNS (3), BENCH_WORK (/tmp/bench-work).
V=${VESSEL:-vessel}
W=${BENCH_WORK:-/tmp/bench-work}
K=${NESTED_KERNEL:-$(ls /boot/vmlinuz-*-cloud-amd64 | sort -V | tail -1)}
RUNS=${BENCH_RUNS:-3}
MEM=256
ROOT=$W/state
rm -rf "$W"; mkdir -p "$W/rootfs/bin" "$W/rootfs/tmp" "$ROOT" "$W/cache"
BB=$(command -v busybox); case $BB in /*) ;; *) BB=/bin/busybox;; esac
cp "$BB" "$W/rootfs/bin/busybox"
for a in sh echo sleep cat; do ln -sf busybox "$W/rootfs/bin/$a"; done
for e in kvm qemu; do
  printf '[vm]\nengine = "%s"\naccel = "kvm"\nkernel = "%s"\ncache_dir = "%s"\nmemory_mib = %s\nboot_timeout_secs = 240\n' \
    "$e" "$K" "$W/cache" "$MEM" > "$W/$e.toml"
done
AGENT=${VESSEL_AGENT:-$(command -v vessel-agent)}
[ -n "$AGENT" ] && for e in kvm qemu; do printf 'guest_agent = "%s"\n' "$AGENT" >> "$W/$e.toml"; done
cs() { cut -d' ' -f1 /proc/uptime | tr -d .; }
ms_since() { echo $(( ($(cs) - $1) * 10 )); }
bundle() {
  mkdir -p "$W/$1"
  cat > "$W/$1/config.json" <<EOJ
{"ociVersion":"1.0.2","process":{"terminal":false,"user":{"uid":0,"gid":0},"args":$2,"env":["PATH=/bin"],"cwd":"/"},
 "root":{"path":"$W/rootfs"},"annotations":{"io.vessel.isolation":"vm"},
 "linux":{"namespaces":[{"type":"pid"},{"type":"mount"},{"type":"ipc"},{"type":"uts"},{"type":"network"}]}}
EOJ
}
bundle idle '["sleep","600"]'
bundle hello '["echo","first-output"]'
# RSS and PSS of every mapping of PID except guest RAM (mappings of at
# least 7/8 of the guest's size), in KiB.
vmm_mem() {
  awk -v big=$((MEM * 1024 * 7 / 8)) '
    /^[0-9a-f]+-[0-9a-f]+ / { skip = 0; next }
    /^Size:/ { skip = ($2 >= big) }
    /^Rss:/ { if (!skip) rss += $2 }
    /^Pss:/ { if (!skip) pss += $2 }
    END { printf "rss_kib=%d pss_kib=%d", rss, pss }' "/proc/$1/smaps"
}
# Warm both engines' caches (rootfs image, initramfs) outside the figures.
for e in kvm qemu; do
  "$V" --root "$ROOT" --config "$W/$e.toml" run --bundle "$W/hello" warm-$e >/dev/null 2>"$W/warm-$e.err" ||
    echo "BENCH_ERROR engine=$e warm-up run failed: $(tail -c 600 "$W/warm-$e.err")"
done
i=1
while [ $i -le "$RUNS" ]; do
  for e in kvm qemu; do
    v() { "$V" --root "$ROOT" --config "$W/$e.toml" "$@"; }
    id=b-$e-$i
    t0=$(cs)
    v create --bundle "$W/idle" $id >/dev/null 2>"$W/$id.err" &
    cpid=$!
    first=""
    while kill -0 $cpid 2>/dev/null; do
      if [ -z "$first" ] && [ -s "$ROOT/$id/console.log" ]; then first=$(ms_since $t0); fi
      usleep 5000
    done
    wait $cpid; rc=$?
    ready=$(ms_since $t0)
    [ -z "$first" ] && [ -s "$ROOT/$id/console.log" ] && first=$ready
    if [ $rc != 0 ]; then
      echo "BENCH_ERROR engine=$e run=$i create failed: $(tail -c 600 "$W/$id.err") $(tail -n 5 "$ROOT/$id/vmm.log" 2>/dev/null)"
      v delete --force $id >/dev/null 2>&1; continue
    fi
    vmm=$(grep -o '"vmmPid": *[0-9]*' "$ROOT/$id/state.json" | grep -o '[0-9]*$')
    mem=$(vmm_mem "$vmm")
    thr=$(grep Threads: "/proc/$vmm/status" | grep -o '[0-9]*')
    v delete --force $id >/dev/null 2>&1
    id=r-$e-$i
    t0=$(cs)
    out=$(v run --bundle "$W/hello" $id 2>"$W/$id.err" | { read -r line; echo "$(ms_since $t0) $line"; cat >/dev/null; })
    exitms=$(ms_since $t0)
    fo=${out%% *}
    case $out in *first-output*) ;; *) echo "BENCH_ERROR engine=$e run=$i run printed: $out $(tail -c 400 "$W/$id.err")"; fo="";; esac
    [ -e "$ROOT/$id" ] && echo "BENCH_ERROR engine=$e run=$i container $id left after run"
    echo "BENCH engine=$e run=$i first_line_ms=${first:-NA} agent_ready_ms=$ready first_output_ms=${fo:-NA} exit_deleted_ms=$exitms $mem threads=$thr guest_mib=$MEM"
  done
  i=$((i + 1))
done
echo "BENCH_DONE"
