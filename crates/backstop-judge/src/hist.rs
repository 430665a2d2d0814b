//! Cumulative latency histograms (Prometheus `le` buckets).

/// Prometheus `histogram_quantile`: the `q` quantile by linear interpolation inside the bucket
/// that holds it; a quantile in the `+Inf` bucket reports the highest finite bound.
/// `None` for an empty histogram. The one quantile of a histogram in Backstop: the judge, the
/// baselines and the severity of a failure all read p99 through it.
pub fn quantile(q: f64, buckets: &[(f64, u64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut prev_bound = 0.0_f64;
    let mut prev_count = 0_u64;
    for &(bound, count) in buckets {
        if count as f64 >= rank && count > prev_count {
            if bound.is_infinite() {
                return Some(prev_bound);
            }
            let lower = if prev_bound < bound { prev_bound } else { 0.0 };
            let in_bucket = (count - prev_count) as f64;
            return Some(lower + (bound - lower) * (rank - prev_count as f64) / in_bucket);
        }
        if bound.is_finite() {
            prev_bound = bound;
        }
        prev_count = count;
    }
    Some(prev_bound)
}

/// Adds `add` into `acc` bucket by bucket; returns false (and leaves `acc` alone) when the bounds
/// differ. An empty `acc` takes a copy of `add`.
pub(crate) fn add_into(acc: &mut Vec<(f64, u64)>, add: &[(f64, u64)]) -> bool {
    if acc.is_empty() {
        acc.extend_from_slice(add);
        return true;
    }
    if acc.len() != add.len() || acc.iter().zip(add).any(|(a, b)| a.0 != b.0) {
        return false;
    }
    for (a, b) in acc.iter_mut().zip(add) {
        a.1 += b.1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h() -> Vec<(f64, u64)> {
        vec![(10.0, 10), (100.0, 90), (1000.0, 100), (f64::INFINITY, 100)]
    }

    #[test]
    fn quantile_interpolates_like_prometheus() {
        // rank 50 lies in (10, 100] holding 80 requests, 40 of them below the rank.
        assert!((quantile(0.5, &h()).unwrap_or(0.0) - 55.0).abs() < 1e-9);
        // rank 99 lies in (100, 1000]: 100 + 900 * 9/10.
        assert!((quantile(0.99, &h()).unwrap_or(0.0) - 910.0).abs() < 1e-9);
        assert_eq!(quantile(0.5, &[(10.0, 0), (f64::INFINITY, 0)]), None);
        // Everything in +Inf: the highest finite bound.
        assert_eq!(quantile(0.5, &[(10.0, 0), (f64::INFINITY, 4)]), Some(10.0));
    }

    #[test]
    fn p99_is_read_from_cumulative_buckets() {
        let b = [(5.0, 10), (10.0, 90), (25.0, 99), (f64::INFINITY, 100)];
        assert_eq!(quantile(0.99, &b), Some(25.0));
        assert_eq!(quantile(0.99, &[(5.0, 0), (f64::INFINITY, 0)]), None);
    }

    #[test]
    fn add_into_requires_the_same_bounds() {
        let mut acc = Vec::new();
        assert!(add_into(&mut acc, &h()));
        assert!(add_into(&mut acc, &h()));
        assert_eq!(acc[1], (100.0, 180));
        assert!(!add_into(&mut acc, &[(5.0, 1), (f64::INFINITY, 1)]));
    }
}
