//! The few statistics the report needs: percentiles, medians and the rule that throws a
//! repetition away when the machine was too noisy during it.

/// The `p`th percentile (0..=100) by nearest rank of values sorted ascending; `None` when
/// there are none.
pub(crate) fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    // Nearest rank: the smallest value with at least p% of the values at or below it.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.saturating_sub(1).min(sorted.len() - 1)])
}

/// Median, max and all of a set of times in milliseconds.
pub(crate) fn summary_ms(v: &[f64]) -> serde_json::Value {
    serde_json::json!({
        "median_ms": median(v),
        "max_ms": v.iter().copied().reduce(f64::max),
        "all_ms": v,
    })
}

/// The median of any values (the mean of the two middle ones for an even count).
pub(crate) fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    })
}

/// Which repetitions to keep: those whose direct (no proxy) result is within a factor
/// `max_swing` of the median direct result. A repetition where the direct path itself
/// ran at half or twice its usual speed says more about the neighbours than the proxies.
pub(crate) fn keep_repetitions(direct: &[f64], max_swing: f64) -> Vec<bool> {
    let Some(m) = median(direct) else {
        return vec![true; direct.len()];
    };
    direct
        .iter()
        .map(|&d| m > 0.0 && d > 0.0 && d / m <= max_swing && m / d <= max_swing)
        .collect()
}

/// The largest difference, in percentage points, between the observed share of each
/// backend and its weight's share.
pub(crate) fn split_deviation(counts: &[u64], weights: &[u64]) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    let weight_total: u64 = weights.iter().sum();
    if total == 0 || weight_total == 0 || counts.len() != weights.len() {
        return None;
    }
    counts
        .iter()
        .zip(weights)
        .map(|(&c, &w)| {
            (100.0 * c as f64 / total as f64 - 100.0 * w as f64 / weight_total as f64).abs()
        })
        .max_by(f64::total_cmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50.0), Some(50));
        assert_eq!(percentile(&values, 99.0), Some(99));
        assert_eq!(percentile(&values, 100.0), Some(100));
        assert_eq!(percentile(&values, 0.0), Some(1));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
        // 3 values: p50 is the 2nd, p99 the 3rd.
        assert_eq!(percentile(&[10, 20, 30], 50.0), Some(20));
        assert_eq!(percentile(&[10, 20, 30], 99.0), Some(30));
    }

    #[test]
    fn medians_odd_even_and_non_finite() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn a_repetition_whose_direct_run_swung_more_than_twofold_is_discarded() {
        // Median 10,000: 4,000 is 2.5x slower, 25,000 is 2.5x faster, 19,000 is within 2x.
        let direct = [10_000.0, 4_000.0, 9_000.0, 25_000.0, 19_000.0];
        assert_eq!(
            keep_repetitions(&direct, 2.0),
            vec![true, false, true, false, true]
        );
        // A failed run (0 req/s) is never kept.
        assert_eq!(
            keep_repetitions(&[100.0, 0.0, 110.0], 2.0),
            vec![true, false, true]
        );
    }

    #[test]
    fn split_deviation_is_the_worst_backend_in_percentage_points() {
        let d = split_deviation(&[80_500, 14_600, 4_900], &[80, 15, 5]).unwrap_or(f64::NAN);
        assert!((d - 0.5).abs() < 1e-9, "{d}");
        assert_eq!(split_deviation(&[0, 0, 0], &[80, 15, 5]), None);
        assert_eq!(split_deviation(&[1, 2], &[80, 15, 5]), None);
    }
}
