#!/usr/bin/env bash
# The demo: a real workload in a vessel container built from Debian's
# busybox-static, showing its isolation (hostname, pid 1, private network,
# its own cgroup limits), then the same through `vessel exec`, then the same
# bundle in a microVM (vm mode).
set -euo pipefail
VESSEL=${VESSEL:-$(cd "$(dirname "$0")/.." && pwd)/target/release/vessel}
work=$(mktemp -d /tmp/vessel-demo.XXXXXX)
root="$work/state"
id="demo-$$"
cleanup() {
  "$VESSEL" --root "$root" delete --force "$id" >/dev/null 2>&1 || true
  "$VESSEL" --root "$root" delete --force "$id-vm" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/bundle/rootfs/bin" "$work/bundle/rootfs/etc"
cp /bin/busybox "$work/bundle/rootfs/bin/busybox"
for a in sh echo cat hostname ps ip id sleep ls head grep; do
  ln -s busybox "$work/bundle/rootfs/bin/$a"
done
echo 'root:x:0:0:root:/root:/bin/sh' >"$work/bundle/rootfs/etc/passwd"
"$VESSEL" spec --bundle "$work/bundle"
# A workload with limits: 64 MiB of memory, 32 pids, half a CPU.
python3 - "$work/bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["hostname"] = "vessel-demo"
c["process"]["terminal"] = False
c["process"]["args"] = ["sh", "-c", """
echo "hostname:      $(hostname)"
echo "my pid:        $$ (pid 1 of its own pid namespace)"
echo "processes:     $(ps -o pid= | wc -l) visible"
echo "network:       $(ls /sys/class/net | tr '\\n' ' ')(loopback only)"
echo "memory limit:  $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max) bytes"
echo "pids limit:    $(cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max)"
echo "cpu quota:     $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cat /sys/fs/cgroup/cpu.max) per 100ms period"
echo "root fs:       read-only? $(touch /x 2>/dev/null && echo no || echo yes)"
sleep 30
"""]
c["linux"]["resources"] = {
    "devices": [{"allow": False, "access": "rwm"}],
    "memory": {"limit": 64 * 1024 * 1024},
    "pids": {"limit": 32},
    "cpu": {"quota": 50000, "period": 100000},
}
json.dump(c, open(p, "w"), indent=1)
PY
echo "== vessel run --detach (container mode) =="
"$VESSEL" --root "$root" run --detach --bundle "$work/bundle" "$id" >"$work/out" 2>&1 || { cat "$work/out"; exit 1; }
# The workload prints its report, then sleeps: wait for the last line.
for _ in $(seq 100); do grep -q '^root fs:' "$work/out" && break; sleep 0.1; done
cat "$work/out"
echo "== vessel list =="
"$VESSEL" --root "$root" list
echo "== vessel exec: a second process in the same container =="
"$VESSEL" --root "$root" exec "$id" sh -c 'echo "exec sees hostname $(hostname), pids: $(ps -o pid= | tr "\n" " ")"'
echo "== the host's view of the container's cgroup =="
# vessel nests a container's cgroup under the caller's own (as runc's
# systemd-less default does), so take the path from the container's init.
pid=$("$VESSEL" --root "$root" state "$id" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
v1=$(sed -n 's/^[0-9]*:memory://p' "/proc/$pid/cgroup")
v2=$(sed -n 's/^0:://p' "/proc/$pid/cgroup")
if [ -n "$v1" ] && [ -e "/sys/fs/cgroup/memory$v1/memory.limit_in_bytes" ]; then
    echo "/sys/fs/cgroup/memory$v1/memory.limit_in_bytes: $(cat "/sys/fs/cgroup/memory$v1/memory.limit_in_bytes")"
else
    echo "/sys/fs/cgroup$v2/memory.max: $(cat "/sys/fs/cgroup$v2/memory.max")"
fi
echo "== vessel delete --force =="
"$VESSEL" --root "$root" delete --force "$id"
"$VESSEL" --root "$root" list

# The same workload in a microVM: one annotation. The guest has its own
# kernel; the cgroup limit sizes the VM (memory minus the VMM's share) and
# still holds the VMM on the host.
python3 - "$work/bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["annotations"] = {"io.vessel.isolation": "vm"}
c["process"]["args"] = ["sh", "-c", """
echo "kernel:        $(uname -r) (the guest's; the host runs $HOST_KERNEL)"
echo "hostname:      $(hostname)"
echo "my pid:        $$ (pid 1 of its own pid namespace, in the guest)"
echo "guest memory:  $(grep MemTotal /proc/meminfo | tr -s ' ' | cut -d' ' -f2-)"
echo "guest cpus:    $(grep -c ^processor /proc/cpuinfo)"
echo "root fs:       read-only? $(touch /x 2>/dev/null && echo no || echo yes)"
"""]
c["process"]["env"] = c["process"].get("env", []) + ["HOST_KERNEL=" + open("/proc/sys/kernel/osrelease").read().strip()]
c["linux"]["resources"]["memory"] = {"limit": 256 * 1024 * 1024}
json.dump(c, open(p, "w"), indent=1)
PY
echo "== vessel run (vm mode: io.vessel.isolation=vm) =="
"$VESSEL" --root "$root" features | grep -E '"io.vessel.(isolation.modes|vm.engine|vm.accel|vm.engine.reason)"' || true
start=$(date +%s%N)
"$VESSEL" --root "$root" run --bundle "$work/bundle" "$id-vm"
echo "(create to exit: $(( ($(date +%s%N) - start) / 1000000 )) ms, including the guest's boot)"
"$VESSEL" --root "$root" list
