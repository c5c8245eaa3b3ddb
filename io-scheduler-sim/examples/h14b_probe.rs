use vessel_iosim::engine::run;
use vessel_iosim::workload::{DiskSpec, Global, JobFile, JobSpec, SchedSpec};
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cached = args[1] == "1";
    let mut fg = JobSpec { name: "fg".into(), rw: "randread".into(), bs: "64k".into(), size: "10g".into(), ..JobSpec::default() };
    if cached { fg.precache = Some("8g".into()); }
    let mut bg = JobSpec { name: "bg".into(), rw: "read".into(), bs: "64k".into(), size: "10g".into(), direct: true, ..JobSpec::default() };
    bg.direct = true;
    let mut g = Global { runtime: "120s".into(), disk: DiskSpec::Name("sata2008".into()), scheduler: SchedSpec::Name("priority".into()), syscall: "250us".into(), ..Global::default() };
    g.cache.size = "3900m".into();
    let r = run(&JobFile { global: g, jobs: vec![fg, bg] }.resolve().unwrap());
    let s = &r.job("fg").unwrap().samples;
    let v: Vec<String> = s.iter().take(200).map(|x| format!("{:.0}", *x as f64 / 1e6)).collect();
    println!("{}", v.join(" "));
}
