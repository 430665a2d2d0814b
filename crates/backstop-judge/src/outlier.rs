//! One bad instance among a version's many (practice 3.3): the proxy spreads a version's
//! requests evenly over its instances, so when they are alike its errors fall on each instance
//! in the same share. Lindon & Malek's sequential multinomial test ([`DirichletMultinomial`])
//! of where the errors fell keeps the false-alarm rate `alpha` however often it is asked; once
//! it rejects, the instance with the highest error ratio (above its siblings' pooled ratio) is
//! the outlier.

use serde::Serialize;

use crate::anytime::DirichletMultinomial;

/// Prior concentration of the mixture (savvi's default).
const CONCENTRATION: f64 = 100.0;

/// The sequential test over one version's instances, fed each interval's counts.
#[derive(Debug, Clone)]
pub struct OutlierTest {
    instances: Vec<String>,
    test: DirichletMultinomial,
    requests: Vec<u64>,
    errors: Vec<u64>,
    alpha: f64,
}

/// An instance whose error ratio stands out from its siblings'.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outlier {
    pub instance: String,
    pub requests: u64,
    pub errors: u64,
    /// The other instances' pooled counts.
    pub others_requests: u64,
    pub others_errors: u64,
    /// The test's anytime-valid p-value.
    pub p_value: f64,
}

impl OutlierTest {
    /// A test of `instances` (two or more to mean anything) at false-alarm rate `alpha`.
    #[must_use]
    pub fn new(instances: Vec<String>, alpha: f64) -> Self {
        let n = instances.len().max(1);
        Self {
            test: DirichletMultinomial::new(&vec![1.0 / n as f64; n], CONCENTRATION),
            requests: vec![0; n],
            errors: vec![0; n],
            instances,
            alpha,
        }
    }

    /// The instances tested, in order.
    #[must_use]
    pub fn instances(&self) -> &[String] {
        &self.instances
    }

    /// Adds one interval's counts per instance, in the order of [`OutlierTest::instances`].
    pub fn update(&mut self, requests: &[u64], errors: &[u64]) {
        for (total, n) in self.requests.iter_mut().zip(requests) {
            *total += n;
        }
        for (total, n) in self.errors.iter_mut().zip(errors) {
            *total += n;
        }
        self.test.update(errors);
    }

    /// The instance that stands out, once the test rejects "the instances are alike".
    #[must_use]
    pub fn outlier(&self) -> Option<Outlier> {
        if self.instances.len() < 2 {
            return None;
        }
        let p_value = self.test.p_value_anytime();
        if p_value >= self.alpha {
            return None;
        }
        let ratio = |e: u64, r: u64| if r == 0 { 0.0 } else { e as f64 / r as f64 };
        let (worst, _) = self
            .errors
            .iter()
            .zip(&self.requests)
            .enumerate()
            .max_by(|(_, a), (_, b)| ratio(*a.0, *a.1).total_cmp(&ratio(*b.0, *b.1)))?;
        let others_requests = self.requests.iter().sum::<u64>() - self.requests[worst];
        let others_errors = self.errors.iter().sum::<u64>() - self.errors[worst];
        (ratio(self.errors[worst], self.requests[worst]) > ratio(others_errors, others_requests))
            .then(|| Outlier {
                instance: self.instances[worst].clone(),
                requests: self.requests[worst],
                errors: self.errors[worst],
                others_requests,
                others_errors,
                p_value,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::Rng;

    fn ids(n: usize) -> Vec<String> {
        (1..=n).map(|k| format!("i{k}")).collect()
    }

    /// `rounds` intervals of `per` requests per instance, each failing with its own rate.
    fn run(rates: &[f64], rounds: usize, per: u64, seed: u64) -> Option<Outlier> {
        let mut rng = Rng::new(seed);
        let mut test = OutlierTest::new(ids(rates.len()), 0.01);
        for _ in 0..rounds {
            let errors: Vec<u64> = rates
                .iter()
                .map(|p| (0..per).filter(|_| rng.f64() < *p).count() as u64)
                .collect();
            test.update(&vec![per; rates.len()], &errors);
            if let Some(o) = test.outlier() {
                return Some(o);
            }
        }
        None
    }

    #[test]
    fn one_bad_instance_among_ten_is_found() {
        let mut rates = vec![0.01; 10];
        rates[6] = 0.2;
        let found = run(&rates, 30, 20, 7).expect("the bad instance is found");
        assert_eq!(found.instance, "i7");
        assert!(found.errors * found.others_requests > found.others_errors * found.requests);
    }

    #[test]
    fn alike_instances_raise_few_false_alarms() {
        let alarms = (0..200)
            .filter(|seed| run(&[0.02; 10], 60, 20, *seed).is_some())
            .count();
        // alpha is 1 %: allow sampling slack, but a test that cries wolf fails.
        assert!(alarms <= 6, "{alarms} false alarms in 200 runs");
    }

    #[test]
    fn one_instance_or_no_errors_is_never_an_outlier() {
        let mut one = OutlierTest::new(ids(1), 0.01);
        one.update(&[100], &[100]);
        assert_eq!(one.outlier(), None);
        let mut quiet = OutlierTest::new(ids(3), 0.01);
        quiet.update(&[100, 100, 100], &[0, 0, 0]);
        assert_eq!(quiet.outlier(), None);
    }
}
