#!/usr/bin/env bash
# Runs vessel-cgroups' block-IO tests (hybrid_v1.rs and, with the io
# controller on cgroup v2, v2_mount.rs; filter "blockio") on a
# kernel that has BFQ, when the host's kernel does not: Debian's cloud
# kernel (BFQ and loop as modules) boots under QEMU TCG with an initramfs
# holding busybox, util-linux's losetup, the test binary and its libraries.
# The guest mounts the cgroup v1 controllers, loads bfq.ko and loop.ko and
# attaches a virtio disk (so the tests find a whole disk besides loops).
#
#   cgroups/tests/bfq_vm.sh            # prints the guest's test output
#
# Exit status: the test binary's. Needs qemu-system-x86 and
# linux-image-cloud-amd64 (scripts/install-deps.sh). Everything it makes
# is under one temporary directory, removed on exit.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
kver=${KVER:-$(ls /lib/modules | grep -- '-cloud-amd64$' | sort -V | tail -1)}
kernel=/boot/vmlinuz-$kver
mods=/lib/modules/$kver/kernel
for f in "$kernel" "$mods/block/bfq.ko" /usr/bin/qemu-system-x86_64 /bin/busybox /usr/sbin/losetup; do
  [ -e "$f" ] || { echo "SKIP bfq_vm: $f missing"; exit 0; }
done

bins=$(cd "$root" && cargo test -p vessel-cgroups --test hybrid_v1 --test v2_mount --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for l in sys.stdin:
    try: m = json.loads(l)
    except ValueError: continue
    if m.get("executable") and m.get("target", {}).get("name") in ("hybrid_v1", "v2_mount"):
        print(m["target"]["name"], m["executable"])')
v1bin=$(echo "$bins" | awk '$1 == "hybrid_v1" {print $2}' | tail -1)
v2bin=$(echo "$bins" | awk '$1 == "v2_mount" {print $2}' | tail -1)
[ -x "$v1bin" ] && [ -x "$v2bin" ] || { echo "bfq_vm: could not build the test binaries"; exit 1; }

work=$(mktemp -d /var/tmp/vessel-bfqvm-XXXXXX)
trap 'rm -rf "$work"' EXIT
ir=$work/initramfs
mkdir -p "$ir"/{bin,sbin,usr/bin,usr/sbin,lib/x86_64-linux-gnu,lib64,mods,proc,sys,dev,tmp}
cp /bin/busybox "$ir/bin/"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$ir/bin/$a"; done
cp /usr/sbin/losetup "$ir/sbin/losetup"
rm -f "$ir/bin/losetup"
cp "$v1bin" "$ir/hybrid_v1"
cp "$v2bin" "$ir/v2_mount"
for f in "$v1bin" "$v2bin" /usr/sbin/losetup; do
  ldd "$f" | awk '/=>/ {print $3} /ld-linux/ {print $1}' | while read -r lib; do
    [ -f "$lib" ] && cp -L "$lib" "$ir$lib"
  done
done
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk loop bfq; do
  f=$(find "$mods" -name "$m.ko" | head -1)
  [ -n "$f" ] && cp "$f" "$ir/mods/"
done
cat > "$ir/init" <<'EOF'
#!/bin/sh
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk loop bfq; do
  [ -f /mods/$m.ko ] && insmod /mods/$m.ko
done
mount -t tmpfs cgroup /sys/fs/cgroup
for c in cpu cpuacct cpuset memory devices freezer pids; do
  mkdir -p /sys/fs/cgroup/$c && mount -t cgroup -o $c cgroup /sys/fs/cgroup/$c
done
mkdir -p /sys/fs/cgroup/unified && mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified
sleep 1
echo "guest kernel $(uname -r); vda: $(cat /sys/block/vda/queue/scheduler 2>&1)"
cd /tmp
# First with the io controller on cgroup2 (v2_mount.rs mounts its own
# cgroup2 hierarchy), then bound to a v1 blkio hierarchy.
TMPDIR=/tmp /v2_mount --test-threads=1 --nocapture blockio; r2=$?
mkdir -p /sys/fs/cgroup/blkio && mount -t cgroup -o blkio cgroup /sys/fs/cgroup/blkio
TMPDIR=/tmp /hybrid_v1 --test-threads=1 --nocapture blockio; r1=$?
echo "VESSEL-BFQ-VM-RESULT=$((r1 | r2))"
poweroff -f
EOF
chmod +x "$ir/init"
(cd "$ir" && find . | cpio -o -H newc --quiet | gzip -1) > "$work/initramfs.gz"
truncate -s 64M "$work/disk.raw"

out=$work/console.txt
timeout 600 qemu-system-x86_64 -accel tcg -cpu max -m 1024 -smp 1 -nographic -no-reboot \
  -kernel "$kernel" -initrd "$work/initramfs.gz" \
  -append "console=ttyS0 quiet panic=-1 tsc_early_khz=2100000 rdinit=/init" \
  -drive file="$work/disk.raw",format=raw,if=virtio </dev/null | tee "$out" | grep -v '^\s*$' || true
rc=$(sed -n 's/.*VESSEL-BFQ-VM-RESULT=\([0-9]*\).*/\1/p' "$out" | tail -1)
[ -n "$rc" ] || { echo "bfq_vm: the guest printed no result"; exit 1; }
exit "$rc"
