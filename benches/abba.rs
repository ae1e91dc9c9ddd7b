//! ABBA rounds of two servers, shared by the HTTP benches (`http.rs`, `service.rs`): each
//! round measures both, in alternating order, as `(requests per second, server CPU ns per
//! request)`; the medians and their ratios are printed.

/// Runs `rounds` rounds of `a` and `b` (A first on even rounds, B first on odd ones), printing
/// each round and the medians under the labels `name_a` and `name_b` (and `prefix` before each
/// line).
pub fn run(
    prefix: &str,
    (name_a, mut a): (&str, impl FnMut() -> (f64, f64)),
    (name_b, mut b): (&str, impl FnMut() -> (f64, f64)),
    rounds: usize,
    tail: &str,
) {
    let (mut rps_a, mut rps_b, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut cpu_a, mut cpu_b, mut cpu_ratios) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..rounds {
        let ((ra, xa), (rb, xb)) = if i % 2 == 0 {
            let first = a();
            (first, b())
        } else {
            let first = b();
            (a(), first)
        };
        println!(
            "{prefix}round {i:2}: {name_a} {ra:8.0} req/s {xa:6.0} ns/req   {name_b} {rb:8.0} \
             req/s {xb:6.0} ns/req   ratio {:.3} (cpu {:.3})",
            rb / ra,
            xb / xa
        );
        rps_a.push(ra);
        rps_b.push(rb);
        ratios.push(rb / ra);
        cpu_a.push(xa);
        cpu_b.push(xb);
        cpu_ratios.push(xb / xa);
    }
    let (ma, mb, mr) = (median(rps_a), median(rps_b), median(ratios));
    let (mca, mcb, mcr) = (median(cpu_a), median(cpu_b), median(cpu_ratios));
    println!(
        "{prefix}median: {name_a} {ma:.0} req/s, {name_b} {mb:.0} req/s, median ratio {mr:.4} \
         ({:+.2} % requests per second)",
        (mr - 1.0) * 100.0
    );
    println!(
        "{prefix}server CPU per request (median): {name_a} {mca:.0} ns, {name_b} {mcb:.0} ns, \
         median ratio {mcr:.4} ({:+.2} %); {rounds} rounds a side, {tail}",
        (mcr - 1.0) * 100.0
    );
}

/// The median of `v` (the mean of the middle two for an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}
