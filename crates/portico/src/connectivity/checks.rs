//! Judging results and printing them: each check passes, fails or is skipped with a
//! reason, and the summary names every failure and skip.

use std::fmt::Write as _;

use crate::check_split::Tally;

/// How a check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Passed(String),
    Failed(String),
    Skipped(String),
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub name: String,
    pub outcome: Outcome,
}

/// Every check's result, in the order they ran.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub results: Vec<CheckResult>,
}

impl Summary {
    pub fn record(&mut self, name: &str, outcome: Outcome) -> &CheckResult {
        self.results.push(CheckResult {
            name: name.to_owned(),
            outcome,
        });
        let last = self.results.len() - 1;
        &self.results[last]
    }

    fn count(&self, f: fn(&Outcome) -> bool) -> usize {
        self.results.iter().filter(|r| f(&r.outcome)).count()
    }

    pub fn passed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Passed(_)))
    }

    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed(_)))
    }

    pub fn skipped(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Skipped(_)))
    }

    /// No failure, and at least one check passed.
    pub fn success(&self) -> bool {
        self.failed() == 0 && self.passed() > 0
    }

    /// The closing block: counts, then each failure and skip with its reason.
    pub fn text(&self) -> String {
        let mut out = String::from("Summary:\n");
        for result in &self.results {
            let (mark, detail) = match &result.outcome {
                Outcome::Passed(d) => ("PASS", d),
                Outcome::Failed(d) => ("FAIL", d),
                Outcome::Skipped(d) => ("SKIP", d),
            };
            let _ = writeln!(out, "  [{mark}] {}: {detail}", result.name);
        }
        let (passed, failed, skipped) = (self.passed(), self.failed(), self.skipped());
        if self.success() {
            let _ = write!(
                out,
                "All {passed} checks passed ({skipped} skipped): connectivity test successful"
            );
        } else {
            let names: Vec<&str> = self
                .results
                .iter()
                .filter(|r| matches!(r.outcome, Outcome::Failed(_)))
                .map(|r| r.name.as_str())
                .collect();
            let _ = write!(
                out,
                "{failed} of {} checks failed ({passed} passed, {skipped} skipped): {}",
                self.results.len(),
                names.join(", ")
            );
        }
        out
    }
}

impl std::fmt::Display for CheckResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.outcome {
            Outcome::Passed(d) => write!(f, "✅ {}: {d}", self.name),
            Outcome::Failed(d) => write!(f, "❌ {}: {d}", self.name),
            Outcome::Skipped(d) => write!(f, "⏭️  {}: skipped: {d}", self.name),
        }
    }
}

/// Every request answered, all by `backend`.
pub(crate) fn all_from(tally: &Tally, backend: &str) -> Outcome {
    if let Some(failure) = failures(tally) {
        return failure;
    }
    let others: Vec<String> = tally
        .backends
        .iter()
        .filter(|(b, _)| b.as_str() != backend)
        .map(|(b, n)| format!("{b} ({n})"))
        .collect();
    if others.is_empty() {
        Outcome::Passed(format!(
            "{}/{} requests answered by {backend}",
            tally.answered(),
            tally.sent
        ))
    } else {
        Outcome::Failed(format!(
            "expected every answer from {backend}, also got {}",
            others.join(", ")
        ))
    }
}

/// `Failed` when no request was sent or one failed.
fn failures(tally: &Tally) -> Option<Outcome> {
    if tally.sent == 0 {
        return Some(Outcome::Failed("no request was sent".to_owned()));
    }
    (tally.failed > 0).then(|| {
        Outcome::Failed(format!(
            "{} of {} requests to {} failed: {}",
            tally.failed,
            tally.sent,
            tally.url,
            tally.errors.join("; ")
        ))
    })
}

/// Every request answered, split between `weights` (backend, weight) within statistical
/// tolerance: each backend's count within 4.5 standard deviations of its binomial
/// expectation (a false alarm about once in 150000 runs), and every backend seen.
pub(crate) fn split_within_tolerance(tally: &Tally, weights: &[(&str, u32)]) -> Outcome {
    if let Some(failure) = failures(tally) {
        return failure;
    }
    let total: u32 = weights.iter().map(|(_, w)| w).sum();
    let n = f64::from(tally.answered());
    let mut parts = Vec::new();
    let mut wrong = Vec::new();
    for (backend, weight) in weights {
        let p = f64::from(*weight) / f64::from(total.max(1));
        let expected = n * p;
        let slack = 4.5 * (n * p * (1.0 - p)).sqrt() + 1.0;
        let got = tally.backends.get(*backend).copied().unwrap_or(0);
        parts.push(format!("{backend} {got} (expected {expected:.0})"));
        if (f64::from(got) - expected).abs() > slack || (*weight > 0 && got == 0) {
            wrong.push(format!(
                "{backend}: {got} of {n}, expected {expected:.0} ± {slack:.0}"
            ));
        }
    }
    let strangers: Vec<&String> = tally
        .backends
        .keys()
        .filter(|b| !weights.iter().any(|(w, _)| w == b))
        .collect();
    if !strangers.is_empty() {
        wrong.push(format!("answers from unexpected backends {strangers:?}"));
    }
    if wrong.is_empty() {
        Outcome::Passed(parts.join(", "))
    } else {
        Outcome::Failed(format!("split out of tolerance: {}", wrong.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(counts: &[(&str, u32)], failed: u32) -> Tally {
        let mut t = Tally {
            url: "http://gw/".into(),
            ..Tally::default()
        };
        for (backend, n) in counts {
            for _ in 0..*n {
                t.add(Ok((*backend).to_owned()));
            }
        }
        for _ in 0..failed {
            t.add(Err("connection refused".to_owned()));
        }
        t
    }

    #[test]
    fn one_backend_checks() {
        assert!(matches!(
            all_from(&tally(&[("a", 5)], 0), "a"),
            Outcome::Passed(_)
        ));
        let Outcome::Failed(why) = all_from(&tally(&[("a", 4), ("b", 1)], 0), "a") else {
            panic!("b answered")
        };
        assert!(why.contains("b (1)"), "{why}");
        let Outcome::Failed(why) = all_from(&tally(&[("a", 4)], 1), "a") else {
            panic!("a request failed")
        };
        assert!(why.contains("1 of 5") && why.contains("refused"), "{why}");
        assert!(matches!(all_from(&tally(&[], 0), "a"), Outcome::Failed(_)));
    }

    #[test]
    fn split_tolerance() {
        let weights = [("same", 3), ("other", 1)];
        let ok = split_within_tolerance(&tally(&[("same", 150), ("other", 50)], 0), &weights);
        assert!(matches!(ok, Outcome::Passed(_)), "{ok:?}");
        let near = split_within_tolerance(&tally(&[("same", 165), ("other", 35)], 0), &weights);
        assert!(matches!(near, Outcome::Passed(_)), "{near:?}");
        let all_one = split_within_tolerance(&tally(&[("same", 200)], 0), &weights);
        assert!(matches!(all_one, Outcome::Failed(_)), "{all_one:?}");
        let even = split_within_tolerance(&tally(&[("same", 100), ("other", 100)], 0), &weights);
        assert!(matches!(even, Outcome::Failed(_)), "{even:?}");
        let stranger = split_within_tolerance(
            &tally(&[("same", 150), ("other", 49), ("x", 1)], 0),
            &weights,
        );
        assert!(matches!(stranger, Outcome::Failed(_)), "{stranger:?}");
    }

    #[test]
    fn summary_names_failures_and_skips() {
        let mut summary = Summary::default();
        summary.record("pod -> ClusterIP", Outcome::Passed("10/10".into()));
        summary.record(
            "pod -> ClusterIP (other node)",
            Outcome::Skipped("1 node".into()),
        );
        assert!(summary.success());
        assert!(
            summary
                .text()
                .ends_with("All 1 checks passed (1 skipped): connectivity test successful")
        );
        assert!(
            summary
                .text()
                .contains("[SKIP] pod -> ClusterIP (other node): 1 node")
        );
        summary.record("outside -> Gateway HTTP", Outcome::Failed("refused".into()));
        assert!(!summary.success());
        let text = summary.text();
        assert!(
            text.ends_with("1 of 3 checks failed (1 passed, 1 skipped): outside -> Gateway HTTP"),
            "{text}"
        );
        assert!(!Summary::default().success());
    }
}
