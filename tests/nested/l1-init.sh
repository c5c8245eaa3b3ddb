#!/bin/busybox sh
# /init of the outer VM (L1) of the nested KVM harness. Stage 1 copies the
# initramfs into a tmpfs and switches root to it (vessel pivots and mounts,
# which the initramfs' rootfs does not allow); stage 2 loads kvm_amd, sets
# up cgroup2 and runs /nested/scenarios.sh (or the script named by nested_script=). Every line the harness parses
# starts with NESTED_.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
if [ "$1" != stage2 ]; then
  mount -t proc proc /proc
  mkdir -p /mnt
  mount -t tmpfs -o size=90% root /mnt
  for d in $(ls /); do
    case $d in proc|sys|dev|mnt) ;; *) cp -a "/$d" /mnt/ ;; esac
  done
  mkdir -p /mnt/proc /mnt/sys /mnt/dev /mnt/mnt
  umount /proc
  exec switch_root /mnt /init stage2
fi
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm /run/netns /var/cache/vessel /var/run
mount -t devpts devpts /dev/pts
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
mount --make-rprivate /
mount -t cgroup2 cgroup2 /sys/fs/cgroup
echo "+cpu +memory +pids +io +cpuset" > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null
ip link set lo up
hostname l1
getarg() { for a in $(cat /proc/cmdline); do case $a in $1=*) echo "${a#*=}"; return;; esac; done; echo "$2"; }
echo "NESTED_L1_UP uptime=$(cut -d' ' -f1 /proc/uptime) vendor=$(grep -m1 vendor_id /proc/cpuinfo | cut -d: -f2)"
# nx_huge_pages=never: otherwise this 6.1 kernel gives every VM a
# "kvm-nx-lpage-recovery" kernel thread in its owner's cgroup, which the
# cgroup v2 freezer cannot freeze, so `pause` of any KVM VMM (vessel's or
# QEMU) times out (fixed upstream in 6.13, where it became a vhost_task).
modprobe kvm nx_huge_pages=never || echo "NESTED_NOTE kvm nx_huge_pages=never refused"
modprobe kvm_amd npt=1 nested=0 && echo "NESTED_KVM_AMD loaded" || echo "NESTED_KVM_AMD failed"
# The kernel loads modules on demand (qdiscs, filters) through this path.
echo /bin/modprobe > /proc/sys/kernel/modprobe
for m in tun veth sch_ingress cls_u32 act_mirred; do modprobe $m || echo "NESTED_NOTE modprobe $m failed"; done
[ -c /dev/kvm ] && echo "NESTED_KVM_DEV ok" || echo "NESTED_KVM_DEV missing"
export BENCH_RUNS=$(getarg bench_runs 3)
export NESTED_ONLY=$(getarg nested_only "" | tr ':' ',')
sh /nested/$(getarg nested_script scenarios.sh)
echo "NESTED_DONE rc=$? uptime=$(cut -d' ' -f1 /proc/uptime)"
reboot -f
