#!/bin/bash
# Builds the outer VM (L1) of the nested KVM harness:
#   $OUT/bzImage       Debian's cloud kernel from /boot (also the guest kernel inside L1)
#   $OUT/l1.cpio       its initramfs: busybox, the kvm and guest modules with
#                      their dependencies, the static vessel, mkfs.erofs and
#                      mkfs.ext4 (vm mode builds the rootfs and scratch images),
#                      ip, QEMU with its firmware (the engine comparison), the
#                      scripts of tests/nested, the helpers in $NESTED_TOOLS
#                      (console-receiver), and /init (tests/nested/l1-init.sh).
# Usage: build-l1.sh OUT VESSEL [AGENT]
#   VESSEL runs in L1 (a dynamic build gets its libraries copied); AGENT is
#   the static vessel that becomes the guest's /init (default: VESSEL).
# Rebuilt only when an input changed (the harness compares $OUT/inputs).
set -euo pipefail
OUT=$1 VESSEL=$2 AGENT=${3:-$2}
HERE=$(cd "$(dirname "$0")" && pwd)
KVER=${KVER:-$(ls /lib/modules | grep -- -cloud-amd64 | sort -V | tail -1)}
KIMG=/boot/vmlinuz-$KVER
BB=$(command -v busybox)
[ -n "$KVER" ] && [ -r "$KIMG" ] || { echo "build-l1: no Debian cloud kernel in /boot (linux-image-cloud-amd64)" >&2; exit 2; }
static() { o=$(ldd "$1" 2>&1 || true); echo "$o" | grep -q 'not a dynamic executable\|statically linked'; }
static "$BB" || { echo "build-l1: need busybox-static" >&2; exit 2; }
static "$AGENT" || { echo "build-l1: $AGENT is not static (make release)" >&2; exit 2; }

mkdir -p "$OUT"
R=$OUT/root
rm -rf "$R"
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,etc,boot,lib64,lib/x86_64-linux-gnu,nested}
cp "$BB" "$R/bin/busybox"
for a in $("$BB" --list); do [ -e "$R/bin/$a" ] || ln -s busybox "$R/bin/$a"; done

# Modules: kvm for L1 itself, tun for the container's taps, veth/bridge for
# the namespace scenario, and what vessel's guest initramfs takes
# (vm-backend/src/guest/kernel.rs DEFAULT_MODULES), each with its
# dependencies from modules.dep.
MD=/lib/modules/$KVER
want="kvm kvm_amd tun veth sch_ingress act_mirred cls_matchall cls_u32 virtio_mmio virtio_blk virtio_console virtio_net vmw_vsock_virtio_transport overlay erofs ext4"
declare -A seen
add_mod() {
  local name=$1 line path deps d
  [ -n "${seen[$name]:-}" ] && return; seen[$name]=1
  line=$(awk -v n="$name" '{p=$1; sub(":$","",p); b=p; sub(".*/","",b); sub("\\.ko.*","",b); gsub("-","_",b); if (b==n) {print; exit}}' "$MD/modules.dep")
  [ -z "$line" ] && return   # built in
  path=${line%%:*}; deps=${line#*:}
  mkdir -p "$R/lib/modules/$KVER/$(dirname "$path")"
  cp "$MD/$path" "$R/lib/modules/$KVER/$path"
  for d in $deps; do
    b=$(basename "$d"); b=${b%%.ko*}; add_mod "${b//-/_}"
  done
}
for m in $want; do add_mod "$m"; done
cp "$MD"/modules.dep "$MD"/modules.builtin "$MD"/modules.order "$R/lib/modules/$KVER/" 2>/dev/null || true
cp "$KIMG" "$R/boot/"
cp "$KIMG" "$OUT/bzImage"

# Dynamic tools vm mode runs, with their libraries.
for t in mkfs.erofs mkfs.ext4 ip; do
  p=$(command -v $t) || { echo "build-l1: $t missing (erofs-utils, e2fsprogs, iproute2)" >&2; exit 2; }
  rm -f "$R/bin/$t"   # busybox's applet of that name would come first in PATH
  mkdir -p "$R$(dirname "$p")"; cp -L "$p" "$R$p"
  for l in $(ldd "$p" | grep -o '/[^ ]*'); do mkdir -p "$R$(dirname "$l")"; cp -L "$l" "$R$l"; done
done
# QEMU for the engine comparison (bench) and vessel's qemu engine, with
# the firmware -M microvm loads.
Q=$(command -v qemu-system-x86_64) || { echo "build-l1: qemu-system-x86_64 missing (qemu-system-x86)" >&2; exit 2; }
cp -L "$Q" "$R/usr/bin/"
for l in $(ldd "$Q" | grep -o '/[^ ]*'); do mkdir -p "$R$(dirname "$l")"; cp -L "$l" "$R$l"; done
mkdir -p "$R/usr/share/qemu" "$R/usr/share/seabios"
for f in bios-microvm.bin qboot.rom bios-256k.bin linuxboot_dma.bin kvmvapic.bin; do
  for d in /usr/share/qemu /usr/share/seabios; do
    [ -e "$d/$f" ] && { cp -L "$d/$f" "$R$d/"; break; }
  done
done
cp /etc/mke2fs.conf "$R/etc/" 2>/dev/null || true
echo "root:x:0:0:root:/root:/bin/sh" > "$R/etc/passwd"
echo "root:x:0:" > "$R/etc/group"

cp "$VESSEL" "$R/bin/vessel"
for l in $(ldd "$VESSEL" 2>/dev/null | grep -o '/[^ ]*'); do mkdir -p "$R$(dirname "$l")"; cp -L "$l" "$R$l"; done
cp "$AGENT" "$R/bin/vessel-agent"
# The harness's own helpers (NESTED_TOOLS: paths), in /bin with their libraries.
for t in ${NESTED_TOOLS:-}; do
  cp "$t" "$R/bin/"
  for l in $(ldd "$t" 2>/dev/null | grep -o '/[^ ]*'); do mkdir -p "$R$(dirname "$l")"; cp -L "$l" "$R$l"; done
done
for f in "$HERE"/*.sh; do
  case $(basename "$f") in build-l1.sh|l1-init.sh) ;; *) cp "$f" "$R/nested/" ;; esac
done
[ -n "${EXTRA_DIR:-}" ] && cp -a "$EXTRA_DIR"/. "$R/nested/"
cp "$HERE"/l1-init.sh "$R/init"
chmod +x "$R/init" "$R/nested/"*.sh
(cd "$R" && find . | cpio -o -H newc --quiet) > "$OUT/l1.cpio.tmp"
mv "$OUT/l1.cpio.tmp" "$OUT/l1.cpio"
rm -rf "$R"
echo "build-l1: $(du -h "$OUT/l1.cpio" | cut -f1) initramfs, kernel $KVER"
