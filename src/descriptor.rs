//! Logit descriptors: a logit's responses over the ordered probe set, z-normalized over the probes.

use crate::error::{Error, Result};

/// A logit whose standard deviation over the probes is at most this fraction of
/// `max(1, |mean|)` counts as constant.
pub const CONSTANT_RELATIVE_TOLERANCE: f64 = 1e-6;

/// The largest magnitude a z-normalized descriptor value can have over `probes` probes:
/// `sqrt(probes - 1)` (one probe far from all the others), with room for f16 rounding. Stored
/// descriptors are checked against it (`verify`, compaction, graph builds): a larger value can
/// only come from damage or a hostile file, and would overflow sums that assume the bound.
pub fn max_descriptor_magnitude(probes: usize) -> f32 {
    let exact = (probes.saturating_sub(1) as f64).sqrt();
    (exact * (1.0 + 1e-3) + 1e-3) as f32
}

/// Position and value of the first value of `values` that a z-normalized descriptor over
/// `probes` probes cannot hold: NaN, infinite, or beyond [`max_descriptor_magnitude`].
pub fn first_impossible_value(values: &[f32], probes: usize) -> Option<(usize, f32)> {
    let bound = max_descriptor_magnitude(probes);
    values
        .iter()
        .position(|v| v.is_nan() || v.abs() > bound)
        .map(|i| (i, values[i]))
}

/// One model's raw logits over the probe set, row-major `[probes, logits]`: row `p` is the model's
/// output for probe `p`, the orientation a forward pass produces.
#[derive(Debug, Clone, Copy)]
pub struct LogitMatrix<'a> {
    data: &'a [f32],
    probes: usize,
    logits: usize,
}

impl<'a> LogitMatrix<'a> {
    /// Wraps a row-major `[probes, logits]` buffer, checking its length.
    pub fn new(data: &'a [f32], probes: usize, logits: usize) -> Result<Self> {
        if probes.checked_mul(logits) != Some(data.len()) {
            return Err(Error::InvalidInput(format!(
                "logit matrix of shape [{probes}, {logits}] needs {} values, got {}",
                probes as u128 * logits as u128,
                data.len()
            )));
        }
        if logits == 0 {
            return Err(Error::InvalidInput(
                "logit matrix has no logits (shape [P, 0])".into(),
            ));
        }
        Ok(LogitMatrix {
            data,
            probes,
            logits,
        })
    }
    pub fn probes(&self) -> usize {
        self.probes
    }
    pub fn logits(&self) -> usize {
        self.logits
    }
    pub fn row(&self, p: usize) -> &'a [f32] {
        &self.data[p * self.logits..(p + 1) * self.logits]
    }
}

/// What z-normalization found for one logit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogitStats {
    pub mean: f64,
    pub std: f64,
    /// True when the logit was constant and stored as all zeros (only with `keep_constant`).
    pub constant: bool,
}

/// Z-normalizes every column of `logits` and returns the descriptors entry-major: the result holds
/// `logits()` consecutive runs of `probes()` values. `model` names the model in errors.
pub fn normalize_logits(
    model: &str,
    logits: &LogitMatrix<'_>,
    keep_constant: bool,
) -> Result<(Vec<f32>, Vec<LogitStats>)> {
    let (p, l) = (logits.probes, logits.logits);
    let stats = logit_stats(model, logits, keep_constant)?;
    let mut out = vec![0f32; p * l];
    let mut row = vec![0f32; l];
    for r in 0..p {
        normalize_row(logits.row(r), &stats, &mut row);
        for (j, &x) in row.iter().enumerate() {
            out[j * p + r] = x;
        }
    }
    Ok((out, stats))
}

/// The mean and standard deviation of every column of `logits`, after checking that every value
/// is finite and (unless `keep_constant`) that no column is constant. `model` names the model in
/// errors.
pub fn logit_stats(
    model: &str,
    logits: &LogitMatrix<'_>,
    keep_constant: bool,
) -> Result<Vec<LogitStats>> {
    let (p, l) = (logits.probes, logits.logits);
    let mut sum = vec![0f64; l];
    for r in 0..p {
        for (j, &x) in logits.row(r).iter().enumerate() {
            if !x.is_finite() {
                return Err(Error::NonFinite {
                    what: format!("model {model:?}, logit {j}"),
                    row: r,
                    value: x,
                });
            }
            sum[j] += f64::from(x);
        }
    }
    let mean: Vec<f64> = sum.iter().map(|s| s / p as f64).collect();
    let mut sq = vec![0f64; l];
    for r in 0..p {
        for ((acc, &x), m) in sq.iter_mut().zip(logits.row(r)).zip(&mean) {
            let d = f64::from(x) - m;
            *acc += d * d;
        }
    }
    let mut stats = Vec::with_capacity(l);
    for j in 0..l {
        let std = (sq[j] / p as f64).sqrt();
        let constant = is_constant(mean[j], std);
        if constant && !keep_constant {
            return Err(Error::ConstantLogit {
                what: format!("model {model:?}, logit {j}"),
                std,
            });
        }
        stats.push(LogitStats {
            mean: mean[j],
            std,
            constant,
        });
    }
    Ok(stats)
}

/// Writes into `out` one probe's row of a model's descriptors: `row[j]` z-normalized with
/// `stats[j]`, and 0 for a constant logit. Rows stay probe-major, so a writer stages a model
/// without transposing it. The three slices have the same length.
pub fn normalize_row(row: &[f32], stats: &[LogitStats], out: &mut [f32]) {
    for ((o, &x), s) in out.iter_mut().zip(row).zip(stats) {
        *o = if s.constant {
            0.0
        } else {
            ((f64::from(x) - s.mean) / s.std) as f32
        };
    }
}

fn is_constant(mean: f64, std: f64) -> bool {
    std <= CONSTANT_RELATIVE_TOLERANCE * mean.abs().max(1.0)
}

/// Z-normalizes one query vector (a logit's responses over the probes). `what` names it in errors.
pub fn normalize_query(values: &[f32], what: &str) -> Result<Vec<f32>> {
    if values.len() < 2 {
        return Err(Error::InvalidInput(format!(
            "{what} has {} values; a descriptor needs at least 2 probes",
            values.len()
        )));
    }
    if let Some((i, &x)) = values.iter().enumerate().find(|(_, x)| !x.is_finite()) {
        return Err(Error::NonFinite {
            what: what.to_string(),
            row: i,
            value: x,
        });
    }
    let (mean, std) = mean_std(values);
    if is_constant(mean, std) {
        return Err(Error::ConstantLogit {
            what: what.to_string(),
            std,
        });
    }
    Ok(values
        .iter()
        .map(|&x| ((f64::from(x) - mean) / std) as f32)
        .collect())
}

/// Mean and (population) standard deviation of `values`, in f64.
pub(crate) fn mean_std(values: &[f32]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let var = values
        .iter()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / n;
    (mean, var.sqrt())
}

/// The indices of the `k` highest values of `query`, highest first; ties go to the lower index.
/// This order is also the summation order of the discrepancy, which makes scores reproducible.
pub fn top_probes(query: &[f32], k: usize) -> Vec<u32> {
    let mut idx: Vec<u32> = (0..query.len() as u32).collect();
    let cmp = |a: &u32, b: &u32| {
        query[*b as usize]
            .total_cmp(&query[*a as usize])
            .then(a.cmp(b))
    };
    let k = k.min(idx.len());
    if k < idx.len() && k > 0 {
        idx.select_nth_unstable_by(k - 1, cmp);
        idx.truncate(k);
    }
    idx.sort_unstable_by(cmp);
    idx.truncate(k);
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_z_normalized() {
        // 4 probes x 2 logits
        let data = [1.0, 10.0, 2.0, 20.0, 3.0, 30.0, 4.0, 40.0];
        let m = LogitMatrix::new(&data, 4, 2).unwrap();
        let (d, stats) = normalize_logits("m", &m, false).unwrap();
        for j in 0..2 {
            let col = &d[j * 4..(j + 1) * 4];
            let mean: f32 = col.iter().sum::<f32>() / 4.0;
            let var: f32 = col.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / 4.0;
            assert!(mean.abs() < 1e-6);
            assert!((var - 1.0).abs() < 1e-5);
        }
        // Both columns are the same up to scale, so their descriptors are equal.
        assert_eq!(&d[0..4], &d[4..8]);
        assert!(!stats[0].constant);
    }

    #[test]
    fn nan_is_refused_with_model_and_logit() {
        let data = [1.0, 2.0, f32::NAN, 4.0];
        let m = LogitMatrix::new(&data, 2, 2).unwrap();
        let e = normalize_logits("resnet", &m, false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("resnet") && e.contains("logit 0") && e.contains("row 1"),
            "{e}"
        );
    }

    #[test]
    fn constant_logit_refused_or_kept_as_zeros() {
        let data = [5.0, 1.0, 5.0, 2.0, 5.0, 3.0];
        let m = LogitMatrix::new(&data, 3, 2).unwrap();
        let e = normalize_logits("m", &m, false).unwrap_err();
        assert!(matches!(e, Error::ConstantLogit { .. }), "{e}");
        let (d, stats) = normalize_logits("m", &m, true).unwrap();
        assert!(stats[0].constant && !stats[1].constant);
        assert_eq!(&d[0..3], &[0.0, 0.0, 0.0]);
        assert!(d[3..6].iter().all(|x| x.is_finite()));
    }

    #[test]
    fn shape_is_checked() {
        assert!(LogitMatrix::new(&[1.0; 5], 2, 3).is_err());
        assert!(LogitMatrix::new(&[], 2, 0).is_err());
    }

    #[test]
    fn top_probes_orders_by_value_then_index() {
        let q = [0.5, 2.0, -1.0, 2.0, 1.0];
        assert_eq!(top_probes(&q, 3), vec![1, 3, 4]);
        assert_eq!(top_probes(&q, 10), vec![1, 3, 4, 0, 2]);
        assert_eq!(top_probes(&q, 0), Vec::<u32>::new());
    }

    #[test]
    fn query_normalization_refuses_constant_and_nan() {
        assert!(normalize_query(&[1.0, 1.0, 1.0], "q").is_err());
        assert!(normalize_query(&[1.0, f32::INFINITY], "q").is_err());
        let q = normalize_query(&[1.0, 3.0], "q").unwrap();
        assert_eq!(q, vec![-1.0, 1.0]);
    }
}
