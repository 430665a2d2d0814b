//! Scratch probe (not committed): sequential judge vs oracle on the bench families.
use backstop_judge::bench::{FamilyKind, families, oracle};
use backstop_judge::sim::simulate;
use backstop_judge::{JudgeKind, JudgeSettings, build, replay};
use std::sync::Mutex;

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() { return f64::NAN; }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { 0.5 * (v[n / 2 - 1] + v[n / 2]) }
}

fn main() {
    let frac: f64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0.5);
    let seed: u64 = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(777);
    let fams = families();
    let settings = JudgeSettings { judge: JudgeKind::Sequential, alpha: 0.01, ..JudgeSettings::default() };
    let jobs: Vec<(usize, usize)> = fams.iter().enumerate()
        .flat_map(|(f, fam)| (0..((fam.runs as f64 * frac) as usize).max(4)).map(move |i| (f, i))).collect();
    let res = Mutex::new(vec![(None, None); jobs.len()]);
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&(f, i)) = jobs.get(k) else { break };
                let spec = (fams[f].spec)(i);
                let sd = seed.wrapping_mul(1_000_003) ^ ((f as u64) << 32) ^ i as u64;
                let (iv, tr) = simulate(&spec, sd);
                let mut j = build(&settings);
                let a = replay(j.as_mut(), &iv).failed_at_s;
                let o = oracle(&iv, &tr, 0.01);
                res.lock().unwrap()[k] = (a, o);
            });
        }
    });
    let res = res.into_inner().unwrap();
    let (mut aa, mut aan, mut logs, mut det, mut regn) = (0, 0, Vec::new(), 0, 0);
    for (f, fam) in fams.iter().enumerate() {
        let onset = (fam.spec)(0).regression.onset_s;
        let rs: Vec<_> = jobs.iter().zip(&res).filter(|((jf, _), _)| *jf == f).map(|(_, r)| *r).collect();
        match fam.kind {
            FamilyKind::AA => {
                let n = rs.iter().filter(|r| r.0.is_some()).count();
                aa += n; aan += rs.len();
                println!("{:<22} AA fails {}/{}", fam.name, n, rs.len());
            }
            FamilyKind::Regression => {
                regn += rs.len();
                let early = rs.iter().filter(|r| r.0.is_some_and(|t| t <= onset)).count();
                let pairs: Vec<(f64, f64)> = rs.iter().filter_map(|r| Some((r.0? - onset, r.1? - onset))).filter(|p| p.0 > 0.0).collect();
                det += rs.iter().filter(|r| r.0.is_some_and(|t| t > onset)).count();
                let m = median(pairs.iter().map(|p| p.0).collect());
                let o = median(pairs.iter().map(|p| p.1).collect());
                logs.push((m / o).ln());
                println!("{:<22} seq {:>7.1} oracle {:>6.1} ratio {:.2} early {} det {}/{}", fam.name, m, o, m / o, early, pairs.len(), rs.len());
            }
        }
    }
    println!("AA {aa}/{aan}  detected {det}/{regn}  geomean vs oracle {:.3}", (logs.iter().sum::<f64>() / logs.len() as f64).exp());
}
