//! The workloads of the overhead and consolidation suites, after the
//! benchmark suite of "Virtualization of Linux servers" (seed 003, Table 2
//! and Figure 2), sized for a 2-core machine and taken from Debian.
//!
//! Every workload is a POSIX shell script run as `/bin/sh -c SCRIPT` with
//! `$WORK` naming its scratch directory: natively the script runs on the
//! host, in a container the host's `/usr` is bind-mounted read-only and the
//! scratch directory appears as `/work`, so every mode runs the very same
//! binaries on the same file system. Each script measures itself (the
//! paper's `date +%s.%N` before and after, or the tool's own report) and
//! prints one line `vessel-bench-result=<number>`, so the start-up of a
//! container is not counted in its throughput.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::Path;

use anyhow::{anyhow, Context, Result};

/// The line prefix every workload prints its figure after.
pub const RESULT_PREFIX: &str = "vessel-bench-result=";

/// The TCP port of the iperf3 server the suite runs on the host.
pub const IPERF_PORT: u16 = 15201;

/// How long each workload runs: `Full` for published figures, `Quick` for
/// the CI smoke run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// About 5 s of measured work per workload and run.
    Full,
    /// About 1 s per workload and run.
    Quick,
}

/// One workload of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workload {
    /// Short name used in tables, JSON and `--workloads`.
    pub name: &'static str,
    /// What it does, for the report.
    pub what: &'static str,
    /// Unit of the figure printed by the script.
    pub unit: &'static str,
    /// Whether a larger figure is better (throughput) or worse (time).
    pub higher_is_better: bool,
    /// Whether it talks to the host over the network (iperf3).
    pub network: bool,
}

/// Every workload, in the order the suite runs them.
pub const ALL: &[Workload] = &[
    Workload {
        name: "compile",
        what: "make -j2 of generated C sources with gcc -O2 (the paper's kernel build, scaled)",
        unit: "s",
        higher_is_better: false,
        network: false,
    },
    Workload {
        name: "bzip2",
        what: "bzip2 -9 of a fixed generated file to the scratch disk",
        unit: "s",
        higher_is_better: false,
        network: false,
    },
    Workload {
        name: "dd-copy",
        what: "dd copy of a file on the same file system, 1 MiB blocks, fdatasync",
        unit: "MB/s",
        higher_is_better: true,
        network: false,
    },
    Workload {
        name: "dd-null",
        what: "dd /dev/zero to /dev/null in 512-byte blocks (system-call cost)",
        unit: "MB/s",
        higher_is_better: true,
        network: false,
    },
    Workload {
        name: "fio-randread",
        what: "fio 4 KiB random reads, direct IO, queue depth 1",
        unit: "IOPS",
        higher_is_better: true,
        network: false,
    },
    Workload {
        name: "dbench",
        what: "dbench with its client.txt load on the scratch disk",
        unit: "MB/s",
        higher_is_better: true,
        network: false,
    },
    Workload {
        name: "iperf3",
        what: "iperf3 TCP stream from the workload to a server on the host (netperf's role)",
        unit: "Gbit/s",
        higher_is_better: true,
        network: true,
    },
    Workload {
        name: "sysbench-cpu",
        what: "sysbench cpu, 2 threads, primes up to 20000",
        unit: "events/s",
        higher_is_better: true,
        network: false,
    },
    Workload {
        name: "sysbench-memory",
        what: "sysbench memory, 2 threads, 1 KiB blocks",
        unit: "MiB/s",
        higher_is_better: true,
        network: false,
    },
    Workload {
        name: "sysbench-oltp",
        what: "sysbench oltp_read_write against a MariaDB server started inside the workload",
        unit: "tps",
        higher_is_better: true,
        network: false,
    },
];

/// The workload called `name`.
pub fn by_name(name: &str) -> Result<Workload> {
    ALL.iter().copied().find(|w| w.name == name).ok_or_else(|| {
        let names: Vec<&str> = ALL.iter().map(|w| w.name).collect();
        anyhow!("unknown workload {name:?} (known: {})", names.join(", "))
    })
}

/// How the script reaches the iperf3 server and how many threads it uses.
#[derive(Debug, Clone)]
pub struct Params {
    /// Full or quick sizing.
    pub size: Size,
    /// Threads for sysbench and make (`-j`).
    pub threads: u32,
    /// Address of the host's iperf3 server as seen from the workload.
    pub iperf_server: String,
}

impl Workload {
    /// Creates the workload's input files in `dir` (the host side of its
    /// scratch directory). Deterministic: the same sizing gives the same
    /// bytes.
    pub fn prepare(&self, dir: &Path, size: Size) -> Result<()> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        match self.name {
            "compile" => write_compile_tree(&dir.join("src"), size),
            "bzip2" => write_text_file(&dir.join("input.txt"), scaled(size, 24, 3) << 20),
            "dd-copy" => write_text_file(&dir.join("ddsrc.bin"), scaled(size, 384, 48) << 20),
            _ => Ok(()),
        }
    }

    /// The shell script; `$WORK` is its scratch directory and `$THREADS`
    /// the thread count.
    pub fn script(&self, p: &Params) -> String {
        let t = |full: u64, quick: u64| scaled(p.size, full, quick);
        let threads = p.threads;
        let elapsed = |body: &str| {
            format!(
                "set -e; cd \"$WORK\"; s=$(date +%s.%N); {body}; e=$(date +%s.%N); \
                 echo \"{RESULT_PREFIX}$(echo \"$e - $s\" | awk '{{print $1 - $3}}')\""
            )
        };
        match self.name {
            "compile" => elapsed(&format!(
                "make -s -C src clean >/dev/null; make -s -j{threads} -C src >/dev/null"
            )),
            "bzip2" => elapsed("rm -f out.bz2; bzip2 -9 -c input.txt > out.bz2; sync out.bz2"),
            "dd-copy" => format!(
                "set -e; cd \"$WORK\"; rm -f ddout.bin; \
                 dd if=ddsrc.bin of=ddout.bin bs=1M conv=fdatasync 2>dd.log; \
                 {}; rm -f ddout.bin",
                dd_rate("dd.log")
            ),
            "dd-null" => format!(
                "set -e; cd \"$WORK\"; dd if=/dev/zero of=/dev/null bs=512 count={} 2>dd.log; {}",
                t(4_000_000, 600_000),
                dd_rate("dd.log")
            ),
            "fio-randread" => format!(
                "set -e; cd \"$WORK\"; \
                 fio --name=randread --filename=fio.dat --size={}M --rw=randread --bs=4k \
                 --direct=1 --ioengine=psync --iodepth=1 --time_based --runtime={} \
                 --ramp_time=1 --output-format=terse --terse-version=3 > fio.out; \
                 echo \"{RESULT_PREFIX}$(cut -d';' -f8 fio.out)\"",
                t(256, 32),
                t(5, 1)
            ),
            "dbench" => format!(
                "set -e; cd \"$WORK\"; mkdir -p dbench; \
                 dbench -c /usr/share/dbench/client.txt -D \"$WORK/dbench\" -t {} {} > dbench.out; \
                 echo \"{RESULT_PREFIX}$(sed -n 's/^Throughput \\([0-9.]*\\) MB\\/sec.*/\\1/p' dbench.out)\"",
                t(5, 2),
                t(4, 2)
            ),
            "iperf3" => format!(
                "set -e; cd \"$WORK\"; \
                 iperf3 -c {} -p {IPERF_PORT} -t {} -f g > iperf.out; \
                 echo \"{RESULT_PREFIX}$(awk '/ sender$/ {{print $7}}' iperf.out)\"",
                p.iperf_server,
                t(5, 1)
            ),
            "sysbench-cpu" => format!(
                "set -e; sysbench cpu --threads={threads} --cpu-max-prime=20000 --time={} run \
                 > \"$WORK/sb.out\"; \
                 echo \"{RESULT_PREFIX}$(awk '/events per second:/ {{print $4}}' \"$WORK/sb.out\")\"",
                t(5, 1)
            ),
            "sysbench-memory" => format!(
                "set -e; sysbench memory --threads={threads} --memory-block-size=1K \
                 --memory-total-size=1T --time={} run > \"$WORK/sb.out\"; \
                 echo \"{RESULT_PREFIX}$(sed -n 's/.*transferred (\\([0-9.]*\\) MiB\\/sec).*/\\1/p' \"$WORK/sb.out\")\"",
                t(5, 1)
            ),
            "sysbench-oltp" => oltp_script(threads, t(10_000, 2_000), t(8, 1)),
            other => format!("echo unknown workload {other} >&2; exit 1"),
        }
    }
}

fn scaled(size: Size, full: u64, quick: u64) -> u64 {
    match size {
        Size::Full => full,
        Size::Quick => quick,
    }
}

/// Shell that prints dd's rate in MB/s from its stderr log (bytes / s).
fn dd_rate(log: &str) -> String {
    format!(
        "echo \"{RESULT_PREFIX}$(awk '/bytes/ && /copied/ {{b=$1; for (i=1;i<=NF;i++) if ($i ~ /^s,?$/) s=$(i-1); print b/s/1e6}}' {log})\""
    )
}

/// MariaDB in the workload: a fresh data directory, the server on a unix
/// socket, sysbench's `oltp_read_write` prepared and run, then shut down.
fn oltp_script(threads: u32, rows: u64, secs: u64) -> String {
    let sb = format!(
        "sysbench oltp_read_write --db-driver=mysql --mysql-socket=\"$WORK/mysqld.sock\" \
         --mysql-user=root --tables=1 --table-size={rows}"
    );
    format!(
        "set -e; cd \"$WORK\"; rm -rf db; \
         mariadb-install-db --no-defaults --datadir=\"$WORK/db\" --user=root \
           --auth-root-authentication-method=normal --skip-test-db >install.log 2>&1; \
         mariadbd --no-defaults --datadir=\"$WORK/db\" --socket=\"$WORK/mysqld.sock\" \
           --pid-file=\"$WORK/mysqld.pid\" --log-error=\"$WORK/mysqld.err\" --user=root \
           --skip-networking --skip-name-resolve --innodb-buffer-pool-size=64M \
           --innodb-log-file-size=16M --tmpdir=\"$WORK\" & \
         i=0; while [ ! -S \"$WORK/mysqld.sock\" ]; do i=$((i+1)); \
           if [ $i -gt 600 ]; then echo 'mariadbd did not start' >&2; cat mysqld.err >&2; exit 1; fi; \
           sleep 0.05; done; \
         mariadb --no-defaults -S \"$WORK/mysqld.sock\" -u root -e 'create database sbtest'; \
         {sb} prepare >prepare.log; \
         {sb} --threads={threads} --time={secs} run > oltp.out; \
         mariadb-admin --no-defaults -S \"$WORK/mysqld.sock\" -u root shutdown; wait; \
         echo \"{RESULT_PREFIX}$(sed -n 's/.*transactions: *[0-9]* *(\\([0-9.]*\\) per sec.).*/\\1/p' oltp.out)\""
    )
}

/// The figure a workload printed: the number after the last
/// [`RESULT_PREFIX`] line of `output`.
pub fn parse_result(output: &str) -> Result<f64> {
    let line = output
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix(RESULT_PREFIX))
        .ok_or_else(|| anyhow!("no {RESULT_PREFIX} line in the workload's output"))?;
    let v: f64 = line
        .trim()
        .parse()
        .map_err(|_| anyhow!("workload printed {RESULT_PREFIX}{line:?}, not a number"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(anyhow!(
            "workload printed {RESULT_PREFIX}{v}, not a positive figure"
        ));
    }
    Ok(v)
}

/// Writes `bytes` of deterministic, compressible text: words drawn by a
/// fixed linear congruential generator.
fn write_text_file(path: &Path, bytes: u64) -> Result<()> {
    if fs::metadata(path).is_ok_and(|m| m.len() == bytes) {
        return Ok(());
    }
    const WORDS: &[&str] = &[
        "vessel",
        "container",
        "namespace",
        "cgroup",
        "kernel",
        "guest",
        "host",
        "memory",
        "throughput",
        "latency",
        "scheduler",
        "virtio",
        "the",
        "of",
        "and",
        "a",
        "to",
        "in",
        "server",
        "consolidation",
        "overhead",
        "benchmark",
        "disk",
        "network",
    ];
    let f = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = std::io::BufWriter::new(f);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut written = 0u64;
    let mut line = String::new();
    while written < bytes {
        line.clear();
        for _ in 0..12 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            line.push_str(WORDS[(x >> 33) as usize % WORDS.len()]);
            line.push(' ');
        }
        let _ = writeln!(line, "{}", x >> 40);
        let take = (bytes - written).min(line.len() as u64) as usize;
        w.write_all(&line.as_bytes()[..take])?;
        written += take as u64;
    }
    w.flush()
        .with_context(|| format!("writing {}", path.display()))
}

/// A C project of `files` translation units with a Makefile: enough
/// functions with loops that gcc -O2 has real work.
fn write_compile_tree(dir: &Path, size: Size) -> Result<()> {
    let files = scaled(size, 24, 4);
    let funcs = 60;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut objs = String::new();
    for f in 0..files {
        let mut src = String::from("#include <stdint.h>\n#include <string.h>\n");
        for g in 0..funcs {
            let _ = write!(
                src,
                "uint64_t f{f}_{g}(const uint8_t *p, size_t n, uint64_t s) {{\n\
                 \tuint64_t a[16]; memset(a, 0, sizeof a);\n\
                 \tfor (size_t i = 0; i < n; i++) {{\n\
                 \t\ta[i & 15] ^= (p[i] + s) * {m}u;\n\
                 \t\ts = (s << {r}) | (s >> {r2});\n\
                 \t\tif (a[(i + {g}) & 15] % {d} == 0) s += a[i & 7];\n\
                 \t}}\n\
                 \tfor (int k = 0; k < 16; k++) s ^= a[k] * (k + {g});\n\
                 \treturn s;\n}}\n",
                m = 2654435761u64 + g,
                r = 1 + g % 31,
                r2 = 63 - g % 31,
                d = 3 + g % 7,
            );
        }
        fs::write(dir.join(format!("u{f}.c")), src)?;
        let _ = write!(objs, " u{f}.o");
    }
    fs::write(
        dir.join("main.c"),
        "#include <stdio.h>\nint main(void) { puts(\"built\"); return 0; }\n",
    )?;
    let makefile = format!(
        "CC = gcc\nCFLAGS = -O2 -pipe\nOBJS = main.o{objs}\n\
         prog: $(OBJS)\n\t$(CC) -o $@ $(OBJS)\n\
         %.o: %.c\n\t$(CC) $(CFLAGS) -c -o $@ $<\n\
         clean:\n\trm -f prog *.o\n"
    );
    fs::write(dir.join("Makefile"), makefile)
        .with_context(|| format!("writing {}", dir.join("Makefile").display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        for w in ALL {
            assert_eq!(by_name(w.name).unwrap(), *w);
        }
        assert!(by_name("netperf").is_err());
    }

    #[test]
    fn parses_the_last_result_line() {
        let out = "noise\nvessel-bench-result=1.5\nvessel-bench-result=2.25\ntail\n";
        assert_eq!(parse_result(out).unwrap(), 2.25);
        assert!(parse_result("nothing").is_err());
        assert!(parse_result("vessel-bench-result=").is_err());
        assert!(parse_result("vessel-bench-result=0").is_err());
    }

    #[test]
    fn generated_text_is_deterministic() {
        let d = tempfile::tempdir().unwrap();
        write_text_file(&d.path().join("a"), 10_000).unwrap();
        write_text_file(&d.path().join("b"), 10_000).unwrap();
        let a = fs::read(d.path().join("a")).unwrap();
        assert_eq!(a.len(), 10_000);
        assert_eq!(a, fs::read(d.path().join("b")).unwrap());
    }

    /// Every script runs here, natively, and prints a positive figure.
    #[test]
    fn quick_scripts_run_natively() {
        let d = tempfile::tempdir().unwrap();
        let p = Params {
            size: Size::Quick,
            threads: 2,
            iperf_server: "127.0.0.1".into(),
        };
        for w in ALL
            .iter()
            .filter(|w| !w.network && w.name != "sysbench-oltp")
        {
            let dir = d.path().join(w.name);
            w.prepare(&dir, Size::Quick).unwrap();
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(w.script(&p))
                .env("WORK", &dir)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{}: {}",
                w.name,
                String::from_utf8_lossy(&out.stderr)
            );
            let v = parse_result(&text).unwrap_or_else(|e| panic!("{}: {e}: {text}", w.name));
            assert!(v > 0.0);
        }
    }
}
