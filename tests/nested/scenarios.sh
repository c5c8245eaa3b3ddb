#!/bin/sh
# vm-mode scenarios with `[vm] engine = "kvm"` (vessel's own monitor), run
# inside the nested harness's outer VM, or directly on a host whose KVM the
# probe finds usable. Prints one `NESTED_SCENARIO <name> PASS|FAIL: why`
# line per scenario; details and logs on `NESTED_LOG <name>:` lines.
# Env: VESSEL (vessel), NESTED_WORK (/tmp/nested-work), NESTED_KERNEL
# (newest /boot/vmlinuz-*-cloud-amd64), NESTED_ONLY (comma list; all if empty).
V=${VESSEL:-vessel}
W=${NESTED_WORK:-/tmp/nested-work}
K=${NESTED_KERNEL:-$(ls /boot/vmlinuz-*-cloud-amd64 | sort -V | tail -1)}
ROOT=$W/state
CONF=$W/vessel.toml
rm -rf "$W"; mkdir -p "$W/rootfs/bin" "$W/rootfs/tmp" "$W/rootfs/etc" "$W/rootfs/proc" "$ROOT" "$W/cache"
BB=$(command -v busybox); case $BB in /*) ;; *) BB=/bin/busybox;; esac
cp "$BB" "$W/rootfs/bin/busybox"
for a in sh echo cat ls sleep id pwd uname nproc ip nc ps tr head grep true mount date stty tty; do ln -sf busybox "$W/rootfs/bin/$a"; done
echo "root:x:0:0:root:/:/bin/sh" > "$W/rootfs/etc/passwd"
printf '[vm]\nengine = "kvm"\nkernel = "%s"\ncache_dir = "%s"\nboot_timeout_secs = 240\n' "$K" "$W/cache" > "$CONF"
# The guest's /init must be a static vessel; the one running here may not be.
AGENT=${VESSEL_AGENT:-$(command -v vessel-agent)}
[ -n "$AGENT" ] && printf 'guest_agent = "%s"\n' "$AGENT" >> "$CONF"

FAILED=0
pass() { echo "NESTED_SCENARIO $1 PASS"; }
fail() { echo "NESTED_SCENARIO $1 FAIL: $2"; FAILED=1; dump "$1"; }
log() { echo "NESTED_LOG $1: $2"; }
v() { "$V" --root "$ROOT" --config "$CONF" "$@"; }
want() { [ -z "$NESTED_ONLY" ] || echo ",$NESTED_ONLY," | grep -q ",$1,"; }
# Every VMM log and console of a scenario, for a failure's explanation.
dump() {
  for f in $(find "$ROOT" "$W" -maxdepth 3 \( -name '*.log' -o -name 'console*' \) 2>/dev/null | sort -u); do
    tail -n 25 "$f" 2>/dev/null | sed "s|^|NESTED_LOG $1: $(basename "$f"): |"
  done
}
# bundle NAME ARGS_JSON [NETNS_PATH] [tty|dev]: a vm-mode bundle on the
# shared rootfs; dev adds the /dev and /dev/pts mounts a terminal needs (a
# pty is opened in the container's /dev), tty also sets process.terminal.
bundle() {
  b=$W/b-$1; mkdir -p "$b"
  net='{"type":"network"}'; [ -n "$3" ] && net="{\"type\":\"network\",\"path\":\"$3\"}"
  term=false; dev=
  [ "$4" = tty ] && term=true
  if [ -n "$4" ]; then
    dev='{"destination":"/dev","type":"tmpfs","source":"tmpfs","options":["nosuid","strictatime","mode=755","size=65536k"]},
           {"destination":"/dev/pts","type":"devpts","source":"devpts","options":["nosuid","noexec","newinstance","ptmxmode=0666","mode=0620"]},'
  fi
  cat > "$b/config.json" <<EOJ
{"ociVersion":"1.0.2",
 "process":{"terminal":$term,"user":{"uid":0,"gid":0},"args":$2,
            "env":["PATH=/bin","FOO=bar"],"cwd":"/"},
 "root":{"path":"$W/rootfs"},
 "hostname":"guest-$1",
 "mounts":[$dev{"destination":"/proc","type":"proc","source":"proc"}],
 "annotations":{"io.vessel.isolation":"vm"},
 "linux":{"namespaces":[{"type":"pid"},{"type":"mount"},{"type":"ipc"},{"type":"uts"},$net]}}
EOJ
  echo "$b"
}
vmm_count() { ps -o args 2>/dev/null | grep -c '^[^ ]*vessel vmm' ; }
# gone ID: state, VMM and cgroup of ID are gone.
gone() {
  [ -e "$ROOT/$1" ] && { echo "state dir $ROOT/$1 left"; return 1; }
  [ "$(vmm_count)" = 0 ] || { echo "a vessel vmm process is left: $(ps -o pid,args | grep 'vessel vmm' | grep -v grep | cut -c1-80)"; return 1; }
  left=$(find /sys/fs/cgroup -type d -name "*$1*" 2>/dev/null)
  [ -z "$left" ] || { echo "cgroup left: $left"; return 1; }
  return 0
}
ms() { cut -d' ' -f1 /proc/uptime; }

if want features; then
  f=$(v features 2>&1)
  eng=$(echo "$f" | grep '"io.vessel.vm.engine"')
  log features "$(echo "$f" | grep 'io.vessel.vm.engine.reason' | cut -c1-400)"
  case $eng in *'"kvm"'*) pass features ;; *) fail features "engine line: $eng $(echo "$f" | grep unavailable)";; esac
fi

if want run_output_exit; then
  b=$(bundle run '["sh","-c","echo hello-$FOO cwd=$(pwd) host=$(cat /proc/sys/kernel/hostname) boot=$(cat /proc/sys/kernel/random/boot_id); echo to-stderr >&2; exit 7"]')
  t0=$(ms)
  out=$(v run --bundle "$b" run1 2>"$W/run1.err"); rc=$?
  log run_output_exit "rc=$rc in $(echo "$(ms) $t0" | awk '{print $1-$2}') s; out=$out; err=$(head -c 600 "$W/run1.err")"
  myboot=$(cat /proc/sys/kernel/random/boot_id)
  if [ $rc != 7 ]; then fail run_output_exit "exit code $rc, want 7"
  elif ! echo "$out" | grep -q "hello-bar cwd=/ host=guest-run"; then fail run_output_exit "output: $out"
  elif echo "$out" | grep -q "$myboot"; then fail run_output_exit "the workload ran on the outer kernel (same boot_id)"
  elif ! grep -q to-stderr "$W/run1.err"; then fail run_output_exit "stderr lacks to-stderr"
  elif ! why=$(gone run1); then fail run_output_exit "$why"
  else pass run_output_exit; fi
fi

if want lifecycle; then
  b=$(bundle life '["sh","-c","trap \"echo got-term; exit 3\" TERM; echo up; while true; do sleep 0.1; done"]')
  r=ok
  t0=$(ms)
  v create --bundle "$b" life >"$W/life.out" 2>"$W/life.err" || r="create failed: $(cat "$W/life.err")"
  st() { v state life 2>/dev/null | grep '"status"' | tr -d ' ",' | cut -d: -f2; }
  log lifecycle "create took $(echo "$(ms) $t0" | awk '{print $1-$2}') s (includes the image builds of the first container)"
  [ "$r" = ok ] && [ "$(st)" != created ] && r="status after create: $(st)"
  # The monitor's own log and the guest console of a kvm-engine run.
  sed "s|^|NESTED_LOG lifecycle: vmm.log: |" "$ROOT/life/vmm.log" 2>/dev/null | head -n 20
  sed "s|^|NESTED_LOG lifecycle: console: |" "$ROOT/life/console.log" 2>/dev/null | head -n 30
  vmm=$(grep -o '"vmmPid": *[0-9]*' "$ROOT/life/state.json" | grep -o '[0-9]*$')
  [ -n "$vmm" ] && log lifecycle "VMM pid $vmm: $(grep -E '^(Uid|CapEff|NoNewPrivs|Seccomp|Threads):' /proc/$vmm/status | tr -s '\t\n' '  '); root entries: $(ls -A /proc/$vmm/root | wc -l)"
  [ "$r" = ok ] && { v start life || r="start failed"; }
  if [ "$r" = ok ]; then
    o=$(v exec life sh -c 'echo in-exec $(cat /proc/1/cmdline | tr "\0" " "); exit 4' 2>&1); erc=$?
    log lifecycle "exec rc=$erc: $o"
    [ $erc = 4 ] && echo "$o" | grep -q "in-exec sh -c trap" || r="exec: rc=$erc out=$o"
  fi
  if [ "$r" = ok ]; then
    p=$(v ps life 2>&1); log lifecycle "ps: $(echo "$p" | tr '\n' '|')"
    echo "$p" | grep -q trap || r="ps lacks the workload: $p"
  fi
  if [ "$r" = ok ]; then
    e=$(v update --pids-limit 10 life 2>&1) && r="update --pids-limit was accepted"
    v update --memory 900m life || r="update --memory failed"
    o=$(v exec life echo after-update 2>&1); echo "$o" | grep -q after-update || r="exec after update: $o"
  fi
  if [ "$r" = ok ]; then
    v kill life TERM || r="kill failed"
    i=0; while [ $i -lt 300 ] && [ "$(st)" != stopped ]; do sleep 0.1; i=$((i+1)); done
    [ "$(st)" = stopped ] || r="TERM did not stop it: $(st)"
  fi
  v delete --force life >/dev/null 2>&1
  if [ "$r" != ok ]; then fail lifecycle "$r"
  elif ! why=$(gone life); then fail lifecycle "$why"
  else pass lifecycle; fi
fi

# pause/resume freeze the VMM's cgroup (all its threads, vCPUs in KVM_RUN
# included) and thaw it; the guest answers afterwards.
if want pause_resume; then
  b=$(bundle pz '["sleep","600"]')
  st() { v state pz 2>/dev/null | grep '"status"' | tr -d ' ",' | cut -d: -f2; }
  p=ok
  v create --bundle "$b" pz >/dev/null 2>"$W/pz.err" && v start pz || p="create/start: $(cat "$W/pz.err")"
  if [ "$p" = ok ]; then
    e=$(v pause pz 2>&1); prc=$?
    [ $prc = 0 ] && [ "$(st)" = paused ] || {
      p="pause: rc=$prc status $(st): $e"
      # What did not freeze: every task of the cgroup, its state and wait channel.
      for t in $(cat /sys/fs/cgroup/*pz*/cgroup.threads 2>/dev/null); do
        log pause_resume "task $t $(cut -d' ' -f2,3 /proc/$t/stat 2>/dev/null) wchan=$(cat /proc/$t/wchan 2>/dev/null) comm=$(cat /proc/$t/comm 2>/dev/null)"
      done
      log pause_resume "cgroup.events: $(cat /sys/fs/cgroup/*pz*/cgroup.events 2>/dev/null | tr '\n' ' ')"
    }
    e=$(v resume pz 2>&1); prc=$?
    [ $prc = 0 ] && [ "$(st)" = running ] || {
      p="${p#ok} resume: rc=$prc status $(st): $e"
      for f in vmm.log supervisor.log; do
        tail -n 12 "$ROOT/pz/$f" 2>/dev/null | sed "s|^|NESTED_LOG pause_resume: $f: |"
      done
    }
    o=$(v exec pz echo after-resume 2>&1); echo "$o" | grep -q after-resume || p="${p#ok} exec after resume: $o"
  fi
  v delete --force pz >/dev/null 2>&1
  if [ "$p" != ok ]; then fail pause_resume "$p"
  elif ! why=$(gone pz); then fail pause_resume "$why"
  else pass pause_resume; fi
fi

# A terminal workload: the pty master reaches the console socket (the
# receiver sets its size and types a line), the guest process has a tty of
# that size; then exec --tty --console-socket in a running container.
if want terminal; then
  CR=${CONSOLE_RECEIVER:-$(command -v console-receiver)}
  status() { v state "$1" 2>/dev/null | grep '"status"' | tr -d ' ",' | cut -d: -f2; }
  # receive NAME ROWS COLS INPUT: a receiver on $W/NAME.sock in the
  # background ($crpid), once it listens.
  receive() {
    rm -f "$W/$1.sock" "$W/$1.sock.ready"
    "$CR" "$W/$1.sock" "$2" "$3" "$4" >"$W/$1.out" 2>"$W/$1.rerr" &
    crpid=$!
    i=0; while [ ! -S "$W/$1.sock" ] && [ $i -lt 250 ]; do usleep 20000; i=$((i+1)); done
  }
  t=ok
  if [ -z "$CR" ] || [ ! -x "$CR" ]; then t="console-receiver not found (tests/src/bin, built with the tests crate)"; fi
  if [ "$t" = ok ]; then
    b=$(bundle tty '["sh","-c","[ -t 0 ] && echo stdin-is-tty; stty size; read line; echo \"got:$line\"; exit 5"]' "" tty)
    receive tty1 33 101 "through the vm"
    v create --console-socket "$W/tty1.sock" --bundle "$b" tty1 2>"$W/tty1.err" || t="create: $(cat "$W/tty1.err")"
    i=0; while [ ! -e "$W/tty1.sock.ready" ] && [ $i -lt 250 ]; do usleep 20000; i=$((i+1)); done
    [ "$t" = ok ] && { v start tty1 2>>"$W/tty1.err" || t="start: $(cat "$W/tty1.err")"; }
    [ "$t" = ok ] || kill $crpid 2>/dev/null
    wait $crpid; crc=$?
    i=0; while [ $i -lt 300 ] && [ "$(status tty1)" != stopped ]; do sleep 0.1; i=$((i+1)); done
    out=$(cat "$W/tty1.out")
    log terminal "console socket: receiver rc=$crc status=$(status tty1) out=$(echo "$out" | tr '\n' '|') err=$(head -c 300 "$W/tty1.rerr")"
    if [ "$t" != ok ]; then :
    elif [ $crc != 0 ]; then t="the receiver's pty did not close (rc=$crc): $out"
    elif ! echo "$out" | grep -q stdin-is-tty; then t="the workload's stdin is no tty: $out"
    elif ! echo "$out" | grep -q '^33 101'; then t="window size is not 33 101: $out"
    elif ! echo "$out" | grep -q 'got:through the vm'; then t="the typed line did not arrive: $out"
    elif [ "$(status tty1)" != stopped ]; then t="status after exit: $(status tty1)"
    fi
    v delete --force tty1 >/dev/null 2>&1
    [ "$t" = ok ] && { why=$(gone tty1) || t="$why"; }
  fi
  if [ "$t" = ok ]; then
    b=$(bundle tty2 '["sleep","600"]' "" dev)
    v create --bundle "$b" tty2 >/dev/null 2>"$W/tty2.err" && v start tty2 || t="create/start tty2: $(cat "$W/tty2.err")"
    if [ "$t" = ok ]; then
      receive tty2 20 70 ""
      o=$(v exec --tty --console-socket "$W/tty2.sock" tty2 sh -c 'tty; stty size; exit 3' 2>&1); erc=$?
      # The receiver ends when the relay closes the pty; a failed exec
      # never connected to it.
      i=0; while kill -0 $crpid 2>/dev/null && [ $i -lt 100 ]; do usleep 100000; i=$((i+1)); done
      kill $crpid 2>/dev/null; wait $crpid
      out=$(cat "$W/tty2.out")
      log terminal "exec --tty --console-socket: rc=$erc $o; receiver out=$(echo "$out" | tr '\n' '|')"
      if [ $erc != 3 ]; then t="exec --tty --console-socket: rc=$erc, want 3: $o"
      elif ! echo "$out" | grep -q '^/dev/pts/'; then t="exec --tty --console-socket: no pty: $out"
      elif ! echo "$out" | grep -q '^20 70'; then t="exec --tty --console-socket: window size: $out"
      fi
    fi
    v delete --force tty2 >/dev/null 2>&1
    [ "$t" = ok ] && { why=$(gone tty2) || t="$why"; }
  fi
  if [ "$t" = ok ]; then pass terminal; else fail terminal "$t"; fi
fi

if want rootfs_isolation; then
  echo outer-secret > "$W/outer-secret"
  b=$(bundle iso "[\"sh\",\"-c\",\"cat $W/outer-secret 2>/dev/null && echo LEAK; echo new > /newfile && cat /newfile; ls /bin/busybox; cat /proc/meminfo | head -1\"]")
  out=$(v run --bundle "$b" iso 2>&1); rc=$?
  log rootfs_isolation "rc=$rc out=$(echo "$out" | tr '\n' '|')"
  if echo "$out" | grep -q LEAK; then fail rootfs_isolation "the guest read an outer file"
  elif ! echo "$out" | grep -q '^new$'; then fail rootfs_isolation "root not writable: $out"
  elif [ -e "$W/rootfs/newfile" ]; then fail rootfs_isolation "a guest write reached the bundle rootfs"
  elif ! why=$(gone iso); then fail rootfs_isolation "$why"
  else pass rootfs_isolation; fi
fi

if want smp2; then
  printf 'cpus = 2\n' >> "$CONF"
  b=$(bundle smp '["sh","-c","echo cpus=$(nproc)"]')
  out=$(v run --bundle "$b" smp 2>&1); rc=$?
  sed -i '/^cpus = 2$/d' "$CONF"
  log smp2 "rc=$rc out=$out"
  if [ $rc != 0 ] || ! echo "$out" | grep -q 'cpus=2'; then fail smp2 "rc=$rc: $out"
  elif ! why=$(gone smp); then fail smp2 "$why"
  else pass smp2; fi
fi

if want network; then
  # iproute2's ip (busybox sh would run its own applet for a bare `ip`).
  IP=ip; for p in /usr/sbin/ip /usr/bin/ip /sbin/ip; do [ -x $p ] && [ ! -L $p ] && { IP=$p; break; }; done
  [ "$IP" != ip ] && ip() { "$IP" "$@"; }
  setup=$( (ip netns add nnet && ip link add nh type veth peer name ng && ip link set ng netns nnet &&
  ip addr add 10.213.9.1/24 dev nh && ip link set nh up &&
  ip -n nnet link set ng name eth0 && ip -n nnet addr add 10.213.9.2/24 dev eth0 &&
  ip -n nnet link set eth0 up && ip -n nnet link set lo up && ip -n nnet route add default via 10.213.9.1) 2>&1) ||
    log network "namespace setup failed: $setup; $(ls -la /run/netns 2>&1 | tr '\n' ' ')"
  b=$(bundle net '["sh","-c","ip -o addr show eth0; echo hello-outer | nc 10.213.9.1 7778 && echo SENT-OK"]' /run/netns/nnet)
  nc -l -p 7778 > "$W/net.got" 2>/dev/null &
  ncpid=$!
  out=$(v run --bundle "$b" net 2>&1); rc=$?
  sleep 0.5; kill $ncpid 2>/dev/null; wait $ncpid 2>/dev/null
  log network "rc=$rc out=$(echo "$out" | tr '\n' '|') got=$(cat "$W/net.got")"
  taps=$(ip -n nnet -o link | grep -c 'vt-')
  if ! echo "$out" | grep -q '10.213.9.2/24'; then fail network "guest address: $out"
  elif ! grep -q hello-outer "$W/net.got"; then fail network "the outer side got nothing"
  elif [ "$taps" != 0 ]; then fail network "tap left in the namespace"
  elif ! why=$(gone net); then fail network "$why"
  else pass network; fi
  ip link del nh 2>/dev/null; ip netns del nnet 2>/dev/null
fi

if want bad_input; then
  b=$(bundle bad '["/bin/no-such-program"]')
  e=$(v run --bundle "$b" bad 2>&1); rc=$?
  log bad_input "missing program: rc=$rc $e"
  r=ok
  [ $rc = 0 ] && r="a missing program ran"
  echo "$e" | grep -q no-such-program || r="error does not name the program: $e"
  gone bad >/dev/null || r="$(gone bad)"
  printf '[vm]\nengine = "kvm"\nkernel = "/boot/no-such-kernel"\n' > "$W/bad.toml"
  e=$("$V" --root "$ROOT" --config "$W/bad.toml" run --bundle "$b" bad2 2>&1) && r="a missing kernel was accepted"
  log bad_input "missing kernel: $e"
  echo "$e" | grep -q no-such-kernel || r="error does not name the kernel: $e"
  gone bad2 >/dev/null || r="$(gone bad2)"
  if [ "$r" = ok ]; then pass bad_input; else fail bad_input "$r"; fi
fi
exit $FAILED
