//! Collaborative probing: run each model on a random subset of the probes and impute the rest by
//! low-rank matrix completion.
//!
//! Descriptors of many logits over the same probes form a matrix of low effective rank: probes
//! that look alike draw alike responses. [`ProbeFactors`] holds `V`, a `[probes, rank]` matrix
//! such that every descriptor is close to `V u` for some `u`. A model observed on probes `O`
//! gets `u = (V_O^T V_O + lambda I)^-1 V_O^T x_O` for each of its logits (fold-in), its missing
//! entries become `V u`, and the observed ones keep their values. Factors are fitted by
//! alternating least squares over everything observed so far and stored in the index, so a later
//! append folds a new model in without refitting.

//!
//! The `rounds` submodule holds the policy that chooses each model's probes in two rounds and
//! calls the caller's [`Prober`] to run them: `probelog-tool append --probe-fraction`, the C ABI
//! and the Python package all go through [`probe_batch`] or [`probe_model`].

mod rounds;

pub use rounds::{
    ModelDetails, ProbePlan, ProbeRows, Prober, Round, Staged, probe_batch, probe_model,
};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::descriptor::{LogitMatrix, LogitStats, normalize_logits};
use crate::error::{Error, Result};

/// Settings of the low-rank completion.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CollabOptions {
    /// Rank of the factorization.
    pub rank: usize,
    /// Ridge regularization of every least-squares solve.
    pub lambda: f32,
    /// Alternating least squares sweeps when factors are fitted.
    pub iterations: usize,
    /// Seed of the factors' initialization.
    pub seed: u64,
}

impl Default for CollabOptions {
    fn default() -> Self {
        CollabOptions {
            rank: 32,
            lambda: 1.0,
            iterations: 15,
            seed: 1,
        }
    }
}

/// Share of a model's probe budget that `append --probe-fraction` chooses adaptively (see
/// [`adaptive_probes`]); the rest is a seeded random subset. Measured on two real hubs (README,
/// "Collaborative probing"): 0.5 against 0, 0.75 and 0.9 (0 is the paper's purely random subsets).
pub const DEFAULT_ADAPTIVE_SHARE: f64 = 0.5;

/// Low-rank probe factors `V`, row-major `[probes, rank]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeFactors {
    pub probes: usize,
    pub rank: usize,
    pub values: Vec<f32>,
}

/// One model's observations, z-normalized over its observed probes: `values` is entry-major,
/// `logits` runs of `observed.len()` values. `observed` is sorted and has no duplicates.
#[derive(Debug, Clone, PartialEq)]
pub struct Observations {
    pub observed: Vec<u32>,
    pub logits: usize,
    pub values: Vec<f32>,
}

impl Observations {
    /// Checks and z-normalizes a model's raw logits on the probes `observed` (row `i` of `logits`
    /// is the output for probe `observed[i]`) of a probe set of `probes` probes.
    pub fn from_logits(
        model: &str,
        logits: &LogitMatrix<'_>,
        observed: &[u32],
        probes: usize,
        keep_constant: bool,
    ) -> Result<(Self, Vec<LogitStats>)> {
        if observed.len() != logits.probes() {
            return Err(Error::InvalidInput(format!(
                "model {model:?}: {} observed probes listed but the logits have {} rows",
                observed.len(),
                logits.probes()
            )));
        }
        if observed.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::InvalidInput(format!(
                "model {model:?}: observed probes must be strictly increasing"
            )));
        }
        if let Some(&last) = observed.last()
            && last as usize >= probes
        {
            return Err(Error::InvalidInput(format!(
                "model {model:?}: observed probe {last} does not exist (the probe set has {probes})"
            )));
        }
        if observed.len() < 2 {
            return Err(Error::InvalidInput(format!(
                "model {model:?}: at least 2 observed probes are needed"
            )));
        }
        let (values, stats) = normalize_logits(model, logits, keep_constant)?;
        Ok((
            Observations {
                observed: observed.to_vec(),
                logits: logits.logits(),
                values,
            },
            stats,
        ))
    }

    /// A fully observed model whose descriptors are already z-normalized (entry-major).
    pub fn complete(probes: usize, descriptors: Vec<f32>) -> Self {
        let logits = descriptors.len() / probes;
        Observations {
            observed: (0..probes as u32).collect(),
            logits,
            values: descriptors,
        }
    }

    fn row(&self, j: usize) -> &[f32] {
        let n = self.observed.len();
        &self.values[j * n..(j + 1) * n]
    }
}

/// A symmetric positive definite `r x r` system, factored once (Cholesky), solved many times.
struct Cholesky {
    r: usize,
    l: Vec<f64>,
}

impl Cholesky {
    fn new(mut a: Vec<f64>, r: usize) -> Result<Self> {
        for j in 0..r {
            let mut d = a[j * r + j];
            for k in 0..j {
                d -= a[j * r + k] * a[j * r + k];
            }
            if d <= 0.0 || !d.is_finite() {
                return Err(Error::InvalidInput(
                    "collaborative probing: a least-squares system is singular (raise lambda)"
                        .into(),
                ));
            }
            let d = d.sqrt();
            a[j * r + j] = d;
            for i in j + 1..r {
                let mut s = a[i * r + j];
                for k in 0..j {
                    s -= a[i * r + k] * a[j * r + k];
                }
                a[i * r + j] = s / d;
            }
        }
        Ok(Cholesky { r, l: a })
    }

    fn solve(&self, b: &mut [f64]) {
        let (r, l) = (self.r, &self.l);
        for i in 0..r {
            let mut s = b[i];
            for k in 0..i {
                s -= l[i * r + k] * b[k];
            }
            b[i] = s / l[i * r + i];
        }
        for i in (0..r).rev() {
            let mut s = b[i];
            for k in i + 1..r {
                s -= l[k * r + i] * b[k];
            }
            b[i] = s / l[i * r + i];
        }
    }
}

impl ProbeFactors {
    /// Checks the shape and values of stored factors.
    pub fn new(probes: usize, rank: usize, values: Vec<f32>) -> Result<Self> {
        if rank == 0 || probes.checked_mul(rank) != Some(values.len()) {
            return Err(Error::InvalidInput(format!(
                "probe factors: {} values do not form a [{probes}, {rank}] matrix",
                values.len()
            )));
        }
        if values.iter().any(|v| !v.is_finite()) {
            return Err(Error::InvalidInput(
                "probe factors hold a non-finite value".into(),
            ));
        }
        Ok(ProbeFactors {
            probes,
            rank,
            values,
        })
    }

    fn row(&self, p: usize) -> &[f32] {
        &self.values[p * self.rank..(p + 1) * self.rank]
    }

    /// Row `p` of the augmented basis `[V | 1]`: the constant column gives every logit an
    /// intercept, because observations z-normalized over a subset of the probes are an affine
    /// transform (scale and offset) of the full descriptor.
    fn augmented(&self, p: usize) -> impl Iterator<Item = f64> + '_ {
        self.row(p)
            .iter()
            .map(|&v| f64::from(v))
            .chain(std::iter::once(1.0))
    }

    /// Per-logit codes of one model (row-major `[logits, rank + 1]`, the intercept last), by
    /// ridge regression on its observed probes.
    fn codes(&self, obs: &Observations, lambda: f32) -> Result<Vec<f64>> {
        let r = self.rank + 1;
        let mut gram = vec![0f64; r * r];
        let mut v = vec![0f64; r];
        for &p in &obs.observed {
            v.iter_mut()
                .zip(self.augmented(p as usize))
                .for_each(|(a, b)| *a = b);
            for a in 0..r {
                for b in 0..=a {
                    gram[a * r + b] += v[a] * v[b];
                }
            }
        }
        for a in 0..r {
            for b in 0..a {
                gram[b * r + a] = gram[a * r + b];
            }
            gram[a * r + a] += f64::from(lambda);
        }
        let chol = Cholesky::new(gram, r)?;
        let mut codes = vec![0f64; obs.logits * r];
        for j in 0..obs.logits {
            let rhs = &mut codes[j * r..(j + 1) * r];
            for (i, &p) in obs.observed.iter().enumerate() {
                let x = f64::from(obs.row(j)[i]);
                for (c, v) in rhs.iter_mut().zip(self.augmented(p as usize)) {
                    *c += v * x;
                }
            }
            chol.solve(rhs);
        }
        Ok(codes)
    }

    /// Completes one partially observed model: every logit's missing probes get `V u`, observed
    /// probes keep their values, then each row is z-normalized over all probes. Returns the
    /// descriptors entry-major (`logits` runs of `probes` values).
    pub fn impute(&self, obs: &Observations, lambda: f32) -> Result<Vec<f32>> {
        let (p, r) = (self.probes, self.rank + 1);
        let codes = self.codes(obs, lambda)?;
        let mut out = vec![0f32; obs.logits * p];
        for j in 0..obs.logits {
            let u = &codes[j * r..(j + 1) * r];
            let row = &mut out[j * p..(j + 1) * p];
            for (q, x) in row.iter_mut().enumerate() {
                *x = self.augmented(q).zip(u).map(|(v, &c)| v * c).sum::<f64>() as f32;
            }
            for (i, &q) in obs.observed.iter().enumerate() {
                row[q as usize] = obs.row(j)[i];
            }
            renormalize(row);
        }
        Ok(out)
    }

    /// Fits factors to models observed on any probe subsets, by alternating least squares.
    pub fn fit(probes: usize, models: &[Observations], opts: &CollabOptions) -> Result<Self> {
        let r = opts.rank;
        if r == 0 || r > probes {
            return Err(Error::InvalidParameter(format!(
                "collaborative probing rank {r} must be between 1 and the probe count {probes}"
            )));
        }
        if models.iter().map(|m| m.logits).sum::<usize>() < r {
            return Err(Error::InvalidInput(format!(
                "collaborative probing needs at least {r} logits (the rank) to fit probe factors; \
                 append some fully probed models first or lower the rank"
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
        let scale = 1.0 / (r as f32).sqrt();
        let init: Vec<f32> = (0..probes * r)
            .map(|_| standard_normal(&mut rng) * scale)
            .collect();
        let mut factors = ProbeFactors::new(probes, r, init)?;
        // Which models observe each probe, for the V-step.
        let mut observers: Vec<Vec<(u32, u32)>> = vec![Vec::new(); probes];
        for (m, obs) in models.iter().enumerate() {
            for (i, &p) in obs.observed.iter().enumerate() {
                observers[p as usize].push((m as u32, i as u32));
            }
        }
        for _ in 0..opts.iterations {
            let codes: Vec<Vec<f64>> = models
                .par_iter()
                .map(|m| factors.codes(m, opts.lambda))
                .collect::<Result<_>>()?;
            // Per-model Gram matrices of the codes: every probe a model observes adds them.
            // Codes carry an intercept last; the V-step fits `x - intercept` with the rest.
            let ra = r + 1;
            let grams: Vec<Vec<f64>> = codes
                .par_iter()
                .map(|c| {
                    let mut g = vec![0f64; r * r];
                    for u in c.chunks_exact(ra) {
                        for a in 0..r {
                            for b in 0..=a {
                                g[a * r + b] += u[a] * u[b];
                            }
                        }
                    }
                    g
                })
                .collect();
            let rows: Vec<Vec<f32>> = observers
                .par_iter()
                .map(|obs_p| {
                    let mut a = vec![0f64; r * r];
                    let mut b = vec![0f64; r];
                    for &(m, i) in obs_p {
                        let (m, i) = (m as usize, i as usize);
                        for (x, g) in a.iter_mut().zip(&grams[m]) {
                            *x += g;
                        }
                        for (j, u) in codes[m].chunks_exact(ra).enumerate() {
                            let x = f64::from(models[m].row(j)[i]) - u[r];
                            for (bk, &uk) in b.iter_mut().zip(&u[..r]) {
                                *bk += uk * x;
                            }
                        }
                    }
                    for i in 0..r {
                        for j in 0..i {
                            a[j * r + i] = a[i * r + j];
                        }
                        a[i * r + i] += f64::from(opts.lambda);
                    }
                    Cholesky::new(a, r).map(|c| {
                        c.solve(&mut b);
                        b.iter().map(|&x| x as f32).collect()
                    })
                })
                .collect::<Result<_>>()?;
            factors.values = rows.concat();
        }
        Ok(factors)
    }
}

/// Z-normalizes a row in place (all zeros if it is constant).
pub(crate) fn renormalize(row: &mut [f32]) {
    let (mean, std) = crate::descriptor::mean_std(row);
    if std > 0.0 && std.is_finite() {
        row.iter_mut()
            .for_each(|x| *x = ((f64::from(*x) - mean) / std) as f32);
    } else {
        row.fill(0.0);
    }
}

/// One draw of a standard normal variable (Box-Muller): the random start of the probe factors.
pub(crate) fn standard_normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// A seeded random subset of `fraction` of `probes` probes (at least 2), sorted.
pub fn sample_probes(probes: usize, fraction: f64, seed: u64) -> Result<Vec<u32>> {
    Ok(sample_probe_count(
        probes,
        probe_budget(probes, fraction)?,
        seed,
    ))
}

/// How many of `probes` probes `fraction` of them is: rounded, at least 2.
pub fn probe_budget(probes: usize, fraction: f64) -> Result<usize> {
    if !(fraction > 0.0 && fraction <= 1.0) {
        return Err(Error::InvalidParameter(format!(
            "the probe fraction must be in (0, 1], got {fraction}"
        )));
    }
    Ok(((probes as f64 * fraction).round() as usize).clamp(2.min(probes), probes))
}

/// A seeded random subset of `n` of `probes` probes (all of them if `n >= probes`), sorted. The
/// subsets of [`sample_probes`] are the ones of this function for their size.
pub fn sample_probe_count(probes: usize, n: usize, seed: u64) -> Vec<u32> {
    let n = n.min(probes);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut picked: Vec<u32> = rand::seq::index::sample(&mut rng, probes, n)
        .into_iter()
        .map(|i| i as u32)
        .collect();
    picked.sort_unstable();
    picked
}

/// The probes of a second, adaptive round of collaborative probing for one model.
///
/// `predicted` is the model's completed descriptors after a first round (entry-major, `logits`
/// runs of `probes` values, as [`ProbeFactors::impute`] returns them) and `observed` the probes
/// that round ran (sorted). The logits take turns: each takes the unobserved probe where its
/// completion is highest and not yet taken, until `extra` probes are chosen (or none is left).
/// Returns them sorted.
///
/// The point: the discrepancies read a query's highest probes, and a gallery logit of the same
/// concept is high on the same probes, so that is where measured values beat imputed ones.
pub fn adaptive_probes(
    predicted: &[f32],
    logits: usize,
    probes: usize,
    observed: &[u32],
    extra: usize,
) -> Result<Vec<u32>> {
    if predicted.len() != logits * probes {
        return Err(Error::InvalidInput(format!(
            "adaptive probing: {} predicted values for {logits} logits over {probes} probes",
            predicted.len()
        )));
    }
    let mut taken = vec![false; probes];
    for &q in observed {
        match taken.get_mut(q as usize) {
            Some(t) => *t = true,
            None => {
                return Err(Error::InvalidInput(format!(
                    "adaptive probing: observed probe {q} does not exist (the probe set has {probes})"
                )));
            }
        }
    }
    let free = taken.iter().filter(|&&t| !t).count();
    let extra = extra.min(free);
    if logits == 0 || extra == 0 {
        return Ok(Vec::new());
    }
    // Each logit's unobserved probes, highest prediction first (NaN last: it predicts nothing).
    let orders: Vec<Vec<u32>> = predicted
        .chunks_exact(probes)
        .map(|row| {
            let mut order: Vec<u32> = (0..probes as u32).filter(|&q| !taken[q as usize]).collect();
            order.sort_by(|&a, &b| {
                let (x, y) = (row[a as usize], row[b as usize]);
                y.partial_cmp(&x)
                    .unwrap_or_else(|| x.is_nan().cmp(&y.is_nan()))
                    .then(a.cmp(&b))
            });
            order
        })
        .collect();
    let mut cursors = vec![0usize; logits];
    let mut chosen = Vec::with_capacity(extra);
    'rounds: loop {
        for (order, cursor) in orders.iter().zip(cursors.iter_mut()) {
            while taken[order[*cursor] as usize] {
                *cursor += 1;
            }
            let q = order[*cursor];
            taken[q as usize] = true;
            chosen.push(q);
            if chosen.len() == extra {
                break 'rounds;
            }
        }
    }
    chosen.sort_unstable();
    Ok(chosen)
}

/// How a probe budget splits between a random round and an adaptive one: `(random, adaptive)`
/// probe counts for `fraction` of `probes` with `adaptive_share` of them chosen adaptively. The
/// random round keeps at least 2 probes (a row is z-normalized over it).
pub fn adaptive_split(probes: usize, fraction: f64, adaptive_share: f64) -> Result<(usize, usize)> {
    if !(0.0..1.0).contains(&adaptive_share) {
        return Err(Error::InvalidParameter(format!(
            "the adaptive share must be in [0, 1), got {adaptive_share}"
        )));
    }
    let budget = probe_budget(probes, fraction)?;
    let random =
        ((budget as f64 * (1.0 - adaptive_share)).round() as usize).clamp(2.min(budget), budget);
    Ok((random, budget - random))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adaptive_probes_take_each_logits_highest_in_turn() {
        // Two logits over 8 probes; probes 0 and 5 were observed.
        let predicted = [
            9.0,
            1.0,
            8.0,
            0.0,
            7.0,
            6.0,
            -1.0,
            2.0, // logit 0: 2, 4, 7, ... (0 and 5 taken)
            0.0,
            5.0,
            4.0,
            3.0,
            0.5,
            9.0,
            f32::NAN,
            1.0, // logit 1: 1, 2 (taken), 3, ...
        ];
        let pick = |extra| adaptive_probes(&predicted, 2, 8, &[0, 5], extra).unwrap();
        assert_eq!(pick(0), Vec::<u32>::new());
        assert_eq!(pick(1), vec![2]);
        assert_eq!(pick(2), vec![1, 2]);
        // Logit 1's next is 2, already taken by logit 0, so it takes 3.
        assert_eq!(pick(4), vec![1, 2, 3, 4]);
        // Everything left, NaN last, never an observed probe twice.
        assert_eq!(pick(6), vec![1, 2, 3, 4, 6, 7]);
        assert_eq!(pick(100), vec![1, 2, 3, 4, 6, 7]);
        assert!(adaptive_probes(&predicted, 2, 7, &[0], 1).is_err());
        assert!(adaptive_probes(&predicted, 2, 8, &[8], 1).is_err());
    }

    #[test]
    fn adaptive_split_keeps_the_budget() {
        assert_eq!(adaptive_split(2000, 0.33, 0.0).unwrap(), (660, 0));
        assert_eq!(adaptive_split(2000, 0.33, 0.75).unwrap(), (165, 495));
        assert_eq!(adaptive_split(10, 0.2, 0.9).unwrap(), (2, 0));
        assert!(adaptive_split(100, 0.5, 1.0).is_err());
        assert!(adaptive_split(100, 0.5, -0.1).is_err());
        assert!(adaptive_split(100, 0.5, f64::NAN).is_err());
        assert!(adaptive_split(100, 0.0, 0.5).is_err());
    }

    #[test]
    fn cholesky_solves_a_small_system() {
        // [[4, 2], [2, 3]] x = [2, 1]  ->  x = [0.5, 0]
        let c = Cholesky::new(vec![4.0, 2.0, 2.0, 3.0], 2).unwrap();
        let mut b = vec![2.0, 1.0];
        c.solve(&mut b);
        assert!((b[0] - 0.5).abs() < 1e-12 && b[1].abs() < 1e-12, "{b:?}");
        assert!(Cholesky::new(vec![1.0, 2.0, 2.0, 1.0], 2).is_err());
    }

    #[test]
    fn low_rank_rows_are_completed_from_a_third_of_the_probes() {
        // Exact rank-3 data: imputation from a third of the probes recovers the rest.
        let (p, r) = (90, 3);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let v: Vec<f32> = (0..p * r).map(|_| standard_normal(&mut rng)).collect();
        let row = |u: &[f32]| -> Vec<f32> {
            let mut x: Vec<f32> = (0..p)
                .map(|q| (0..r).map(|k| v[q * r + k] * u[k]).sum())
                .collect();
            renormalize(&mut x);
            x
        };
        let full: Vec<Observations> = (0..40)
            .map(|_| {
                let u: Vec<f32> = (0..r).map(|_| standard_normal(&mut rng)).collect();
                Observations::complete(p, row(&u))
            })
            .collect();
        let opts = CollabOptions {
            rank: r,
            lambda: 1e-3,
            iterations: 30,
            seed: 9,
        };
        let factors = ProbeFactors::fit(p, &full, &opts).unwrap();
        let u = [0.3f32, -1.2, 0.8];
        let truth = row(&u);
        let observed = sample_probes(p, 1.0 / 3.0, 4).unwrap();
        let obs = Observations {
            observed: observed.clone(),
            logits: 1,
            values: observed.iter().map(|&q| truth[q as usize]).collect(),
        };
        let imputed = factors.impute(&obs, opts.lambda).unwrap();
        let err = imputed
            .iter()
            .zip(&truth)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(err < 1e-2, "max error {err}");
    }

    #[test]
    fn observations_are_checked() {
        let logits = [1.0, 2.0, 3.0, 4.0, 5.0, 7.0];
        let m = LogitMatrix::new(&logits, 3, 2).unwrap();
        assert!(Observations::from_logits("m", &m, &[0, 2, 5], 6, false).is_ok());
        assert!(Observations::from_logits("m", &m, &[0, 2], 6, false).is_err());
        assert!(Observations::from_logits("m", &m, &[2, 0, 5], 6, false).is_err());
        assert!(Observations::from_logits("m", &m, &[0, 2, 6], 6, false).is_err());
        assert!(sample_probes(10, 0.0, 1).is_err());
        assert_eq!(
            sample_probes(10, 1.0, 1).unwrap(),
            (0..10).collect::<Vec<u32>>()
        );
        assert_eq!(
            sample_probes(100, 0.3, 7).unwrap(),
            sample_probes(100, 0.3, 7).unwrap()
        );
    }
}
