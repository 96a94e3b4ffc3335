//! A support vector machine with a Gaussian (RBF) kernel over sentence
//! vectors: the semantic layer's head. On the tuning split's folds it read
//! more risk at the same false positives than the networks it replaced
//! (docs/safety.md gives the comparison).
//!
//! Training is the dual problem solved by sequential minimal optimisation,
//! two multipliers at a time, each pair chosen by the second-order rule of
//! Fan, Chen and Lin (2005), as LIBSVM does, over a kernel matrix computed
//! whole up front (15,000 lines make 0.9 GB of it while it trains; the
//! process peaks at 1.2 GB).
//! Its decision values become probabilities through Platt's sigmoid, fitted
//! on decision values of lines held out from the training (three folds),
//! so that the layer can be averaged with the learned layer's probability.

use candle_core::{Device, Tensor};

/// The kernel's width: exp(-GAMMA · |x - y|²). The encoder's vectors have
/// length 1, so this is scikit-learn's "scale" (1 / (dimensions · variance),
/// which is 1.0001 on the tuning split).
const GAMMA: f32 = 1.0;
/// How much a training line may pull on the boundary. On the tuning
/// folds 3 and 10 read the same and 1 read less; 10 flagged 2 more of
/// the 263 safe session tuning turns.
const C: f64 = 3.0;
/// The solver stops when no pair can improve the objective by more than
/// this (LIBSVM's default).
const TOLERANCE: f64 = 1e-3;
/// A floor for a pair's curvature, as LIBSVM has it.
const TAU: f64 = 1e-12;
/// Folds of the training lines whose held-out decision values fit the
/// sigmoid.
const PLATT_FOLDS: usize = 3;
/// The solver gives up after this many steps, or 100 per line if more
/// (LIBSVM's bound); the tuning split takes about 27,000.
const MOST_ITERATIONS: usize = 10_000_000;
/// Rows of the kernel matrix computed in one multiplication.
const BLOCK: usize = 1024;

/// What the training depends on besides its lines, for the cache's key:
/// change the version when the training changes in a way the constants
/// do not show.
pub fn settings() -> String {
    format!(
        "svm 2: C {C} gamma {GAMMA} tolerance {TOLERANCE} tau {TAU} \
         iterations {MOST_ITERATIONS} or 100 per line, platt folds {PLATT_FOLDS}"
    )
}

/// The trained machine: its support vectors, their weights, and the
/// sigmoid from a decision value to a probability.
#[derive(Debug, Clone, PartialEq)]
pub struct Svm {
    dimensions: usize,
    /// Support vectors, one after another (`dimensions` numbers each).
    support: Vec<f32>,
    /// Each support vector's squared length, kept to spare a dot product.
    lengths: Vec<f32>,
    /// Each support vector's multiplier times its label (+1 risk, -1 safe).
    weights: Vec<f32>,
    /// The boundary's offset: a decision value is the weighted sum minus it.
    offset: f32,
    /// Platt's sigmoid: probability = 1 / (1 + exp(a · value + b)).
    a: f32,
    b: f32,
}

impl Svm {
    /// Trains on vectors of `dimensions` numbers each and their labels
    /// (deterministic: no random choice anywhere).
    pub fn train(vectors: &[Vec<f32>], risk: &[bool]) -> Svm {
        assert_eq!(vectors.len(), risk.len(), "a label for every vector");
        let dimensions = vectors.first().map_or(0, Vec::len);
        let gram = gram(vectors).expect("a matrix product on the CPU cannot fail");
        let labels: Vec<f64> = risk.iter().map(|&r| if r { 1.0 } else { -1.0 }).collect();
        let all: Vec<usize> = (0..vectors.len()).collect();

        // Decision values of lines the machine did not train on, for the
        // sigmoid: each fold judged by a machine trained on the others.
        let mut held_out = vec![0.0; vectors.len()];
        for fold in 0..PLATT_FOLDS {
            let (rest, this): (Vec<usize>, Vec<usize>) =
                all.iter().partition(|&&i| i % PLATT_FOLDS != fold);
            let (alpha, offset) = solve(&gram, vectors.len(), &rest, &labels);
            for &t in &this {
                held_out[t] = rest
                    .iter()
                    .zip(&alpha)
                    .filter(|(_, a)| **a > 0.0)
                    .map(|(&i, a)| a * labels[i] * gram[i * vectors.len() + t] as f64)
                    .sum::<f64>()
                    - offset;
            }
        }
        let (a, b) = platt(&held_out, risk);

        let (alpha, offset) = solve(&gram, vectors.len(), &all, &labels);
        let mut svm = Svm {
            dimensions,
            support: Vec::new(),
            lengths: Vec::new(),
            weights: Vec::new(),
            offset: offset as f32,
            a: a as f32,
            b: b as f32,
        };
        for (i, a) in alpha.iter().enumerate() {
            if *a > 0.0 {
                svm.support.extend_from_slice(&vectors[i]);
                svm.lengths.push(dot(&vectors[i], &vectors[i]));
                svm.weights.push((a * labels[i]) as f32);
            }
        }
        svm
    }

    /// How many support vectors the machine keeps.
    pub fn support_vectors(&self) -> usize {
        self.weights.len()
    }

    /// Which side of the boundary a vector falls, and how far: positive is
    /// risk.
    pub fn decision(&self, vector: &[f32]) -> f32 {
        // The support vectors are megabytes, read once per utterance: two
        // halves summed on two threads take half the time. Always split
        // the same way, so a vector's value never depends on the machine.
        let half = self.weights.len() / 2;
        let length = dot(vector, vector);
        let (first, second) = rayon::join(
            || self.kernel_sum(vector, length, 0..half),
            || self.kernel_sum(vector, length, half..self.weights.len()),
        );
        first + second - self.offset
    }

    /// The weighted kernel values of the support vectors in `range`, for a
    /// vector of squared length `length`.
    fn kernel_sum(&self, vector: &[f32], length: f32, range: std::ops::Range<usize>) -> f32 {
        let support = &self.support[range.start * self.dimensions..range.end * self.dimensions];
        let mut sum = 0.0;
        for ((s, l), w) in support
            .chunks_exact(self.dimensions)
            .zip(&self.lengths[range.clone()])
            .zip(&self.weights[range])
        {
            let distance = (l + length - 2.0 * dot(s, vector)).max(0.0);
            sum += w * (-GAMMA * distance).exp();
        }
        sum
    }

    /// The probability that an utterance with this vector is a risk.
    pub fn probability(&self, vector: &[f32]) -> f32 {
        1.0 / (1.0 + (self.a * self.decision(vector) + self.b).exp())
    }

    /// The machine as numbers, for a cache: its dimensions and how many
    /// support vectors it keeps (exact as floats up to 2²⁴), the offset,
    /// the sigmoid, then each support vector followed by its weight.
    pub fn to_floats(&self) -> Vec<f32> {
        let mut out = vec![
            self.dimensions as f32,
            self.weights.len() as f32,
            self.offset,
            self.a,
            self.b,
        ];
        for (s, w) in self
            .support
            .chunks_exact(self.dimensions)
            .zip(&self.weights)
        {
            out.extend_from_slice(s);
            out.push(*w);
        }
        out
    }

    /// The machine from `to_floats`'s numbers, or None if they cannot be
    /// one of `dimensions` (a cache cut short, or from another encoder).
    pub fn from_floats(values: &[f32], dimensions: usize) -> Option<Svm> {
        let (head, rest) = values.split_at_checked(5)?;
        let count = head[1] as usize;
        let whole = head[0] == dimensions as f32
            && head[1] >= 1.0
            && rest.len() == count * (dimensions + 1)
            && values.iter().all(|v| v.is_finite());
        if dimensions == 0 || !whole {
            return None;
        }
        let mut svm = Svm {
            dimensions,
            support: Vec::with_capacity(rest.len()),
            lengths: Vec::new(),
            weights: Vec::new(),
            offset: head[2],
            a: head[3],
            b: head[4],
        };
        for row in rest.chunks_exact(dimensions + 1) {
            let (s, w) = row.split_at(dimensions);
            svm.support.extend_from_slice(s);
            svm.lengths.push(dot(s, s));
            svm.weights.push(w[0]);
        }
        Some(svm)
    }
}

/// A dot product in eight lanes, which the compiler turns into vector
/// instructions (a plain sum in order cannot be reordered for them).
fn dot(x: &[f32], y: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (xs, ys) = (x.chunks_exact(8), y.chunks_exact(8));
    let tail: f32 = xs
        .remainder()
        .iter()
        .zip(ys.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (a, b) in xs.zip(ys) {
        for k in 0..8 {
            lanes[k] += a[k] * b[k];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// The kernel between every pair of vectors, row by row (n × n).
fn gram(vectors: &[Vec<f32>]) -> candle_core::Result<Vec<f32>> {
    let n = vectors.len();
    let dimensions = vectors.first().map_or(0, Vec::len);
    let lengths: Vec<f32> = vectors.iter().map(|v| dot(v, v)).collect();
    let flat: Vec<f32> = vectors.iter().flatten().copied().collect();
    let x = Tensor::from_vec(flat, (n, dimensions), &Device::Cpu)?;
    let xt = x.t()?.contiguous()?;
    let mut gram = Vec::with_capacity(n * n);
    for start in (0..n).step_by(BLOCK) {
        let rows = BLOCK.min(n - start);
        let dots = x.narrow(0, start, rows)?.matmul(&xt)?;
        let dots: Vec<f32> = dots.flatten_all()?.to_vec1()?;
        for (r, row) in dots.chunks_exact(n).enumerate() {
            let li = lengths[start + r];
            gram.extend(
                row.iter()
                    .zip(&lengths)
                    .map(|(d, lj)| (-GAMMA * (li + lj - 2.0 * d).max(0.0)).exp()),
            );
        }
    }
    Ok(gram)
}

/// Solves the dual problem for the lines `lines` of an n × n kernel
/// matrix: their multipliers (in `lines`' order) and the boundary's
/// offset.
fn solve(gram: &[f32], n: usize, lines: &[usize], labels: &[f64]) -> (Vec<f64>, f64) {
    let m = lines.len();
    let y: Vec<f64> = lines.iter().map(|&i| labels[i]).collect();
    // The kernel between line a and every line, in `lines`' order, into
    // one of two rows kept for the whole solve (tens of thousands of steps
    // each read two rows).
    let row = |a: usize, into: &mut Vec<f64>| {
        let base = lines[a] * n;
        into.clear();
        into.extend(lines.iter().map(|&j| gram[base + j] as f64));
    };
    let (mut ki, mut kj) = (Vec::with_capacity(m), Vec::with_capacity(m));
    let diagonal: Vec<f64> = lines.iter().map(|&i| gram[i * n + i] as f64).collect();
    let mut alpha = vec![0.0f64; m];
    // The objective's gradient, Qα - 1, where Q = y yᵀ ∘ K.
    let mut gradient = vec![-1.0f64; m];
    // LIBSVM's I_up and I_low: the multipliers whose y·α may still rise,
    // and those whose y·α may still fall.
    let up = |t: usize, alpha: &[f64]| {
        if y[t] > 0.0 {
            alpha[t] < C
        } else {
            alpha[t] > 0.0
        }
    };
    let low = |t: usize, alpha: &[f64]| {
        if y[t] > 0.0 {
            alpha[t] > 0.0
        } else {
            alpha[t] < C
        }
    };
    for _ in 0..MOST_ITERATIONS.max(100 * m) {
        // i: the most violating multiplier that may go up.
        let mut most = f64::NEG_INFINITY;
        let mut i = usize::MAX;
        for t in 0..m {
            if up(t, &alpha) && -y[t] * gradient[t] >= most {
                most = -y[t] * gradient[t];
                i = t;
            }
        }
        if i == usize::MAX {
            break;
        }
        row(i, &mut ki);
        // j: the partner that decreases the objective most, to second order.
        let mut least = f64::NEG_INFINITY;
        let mut best = f64::INFINITY;
        let mut j = usize::MAX;
        for t in 0..m {
            if !low(t, &alpha) {
                continue;
            }
            let violation = y[t] * gradient[t];
            least = least.max(violation);
            let gain = most + violation;
            if gain > 0.0 {
                let curvature = (diagonal[i] + diagonal[t] - 2.0 * ki[t]).max(TAU);
                let change = -gain * gain / curvature;
                if change <= best {
                    best = change;
                    j = t;
                }
            }
        }
        if most + least < TOLERANCE || j == usize::MAX {
            break;
        }
        row(j, &mut kj);
        let (old_i, old_j) = (alpha[i], alpha[j]);
        // The pair moves along the line that keeps Σ y·α fixed, then is
        // clipped back into the box [0, C]: LIBSVM's update with the same
        // bound for both labels.
        let curvature = (diagonal[i] + diagonal[j] - 2.0 * ki[j]).max(TAU);
        if y[i] != y[j] {
            let delta = (-gradient[i] - gradient[j]) / curvature;
            let difference = alpha[i] - alpha[j];
            alpha[i] += delta;
            alpha[j] += delta;
            if difference > 0.0 {
                if alpha[j] < 0.0 {
                    alpha[j] = 0.0;
                    alpha[i] = difference;
                }
                if alpha[i] > C {
                    alpha[i] = C;
                    alpha[j] = C - difference;
                }
            } else {
                if alpha[i] < 0.0 {
                    alpha[i] = 0.0;
                    alpha[j] = -difference;
                }
                if alpha[j] > C {
                    alpha[j] = C;
                    alpha[i] = C + difference;
                }
            }
        } else {
            let delta = (gradient[i] - gradient[j]) / curvature;
            let sum = alpha[i] + alpha[j];
            alpha[i] -= delta;
            alpha[j] += delta;
            if sum > C {
                if alpha[i] > C {
                    alpha[i] = C;
                    alpha[j] = sum - C;
                }
                if alpha[j] > C {
                    alpha[j] = C;
                    alpha[i] = sum - C;
                }
            } else {
                if alpha[j] < 0.0 {
                    alpha[j] = 0.0;
                    alpha[i] = sum;
                }
                if alpha[i] < 0.0 {
                    alpha[i] = 0.0;
                    alpha[j] = sum;
                }
            }
        }
        // Q's rows i and j are y_i y_t K_it and y_j y_t K_jt.
        let (di, dj) = ((alpha[i] - old_i) * y[i], (alpha[j] - old_j) * y[j]);
        for t in 0..m {
            gradient[t] += y[t] * (ki[t] * di + kj[t] * dj);
        }
    }
    let offset = offset(&alpha, &gradient, &y);
    (alpha, offset)
}

/// The boundary's offset from a solution: the mean of y·gradient over the
/// multipliers strictly between their bounds, or the middle of the range
/// the bounded ones allow when none is.
fn offset(alpha: &[f64], gradient: &[f64], y: &[f64]) -> f64 {
    let (mut upper, mut lower) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut sum, mut free) = (0.0, 0usize);
    for t in 0..alpha.len() {
        let yg = y[t] * gradient[t];
        let risk = y[t] > 0.0;
        // A multiplier at a bound only limits the offset from one side,
        // which side depending on the bound and the label.
        if alpha[t] >= C {
            if risk {
                lower = lower.max(yg);
            } else {
                upper = upper.min(yg);
            }
        } else if alpha[t] <= 0.0 {
            if risk {
                upper = upper.min(yg);
            } else {
                lower = lower.max(yg);
            }
        } else {
            sum += yg;
            free += 1;
        }
    }
    if free > 0 {
        sum / free as f64
    } else {
        (upper + lower) / 2.0
    }
}

/// Platt's sigmoid fitted to decision values and their labels by Newton's
/// method with a backtracking line search (Lin, Lin and Weng's version,
/// which stays finite): (a, b) with probability 1 / (1 + exp(a·f + b)).
fn platt(values: &[f64], risk: &[bool]) -> (f64, f64) {
    let positives = risk.iter().filter(|&&r| r).count() as f64;
    let negatives = risk.len() as f64 - positives;
    // Targets a little off 0 and 1, so that the fit does not run to
    // infinity on separable values.
    let high = (positives + 1.0) / (positives + 2.0);
    let low = 1.0 / (negatives + 2.0);
    let targets: Vec<f64> = risk.iter().map(|&r| if r { high } else { low }).collect();
    let objective = |a: f64, b: f64| -> f64 {
        values
            .iter()
            .zip(&targets)
            .map(|(f, t)| {
                let z = f * a + b;
                if z >= 0.0 {
                    t * z + (1.0 + (-z).exp()).ln()
                } else {
                    (t - 1.0) * z + (1.0 + z.exp()).ln()
                }
            })
            .sum()
    };
    let (mut a, mut b) = (0.0, ((negatives + 1.0) / (positives + 1.0)).ln());
    let mut current = objective(a, b);
    for _ in 0..100 {
        let (mut h11, mut h22, mut h21, mut g1, mut g2) = (1e-12, 1e-12, 0.0, 0.0, 0.0);
        for (f, t) in values.iter().zip(&targets) {
            let z = f * a + b;
            let (p, q) = if z >= 0.0 {
                let e = (-z).exp();
                (e / (1.0 + e), 1.0 / (1.0 + e))
            } else {
                let e = z.exp();
                (1.0 / (1.0 + e), e / (1.0 + e))
            };
            let d2 = p * q;
            h11 += f * f * d2;
            h22 += d2;
            h21 += f * d2;
            let d1 = t - p;
            g1 += f * d1;
            g2 += d1;
        }
        if g1.abs() < 1e-5 && g2.abs() < 1e-5 {
            break;
        }
        let determinant = h11 * h22 - h21 * h21;
        let da = -(h22 * g1 - h21 * g2) / determinant;
        let db = -(-h21 * g1 + h11 * g2) / determinant;
        let slope = g1 * da + g2 * db;
        let mut step = 1.0;
        while step >= 1e-10 {
            let next = objective(a + step * da, b + step * db);
            if next < current + 1e-4 * step * slope {
                a += step * da;
                b += step * db;
                current = next;
                break;
            }
            step /= 2.0;
        }
        if step < 1e-10 {
            break;
        }
    }
    (a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two classes on either side of a curved boundary (a circle), which
    /// no straight line separates.
    fn rings(count: usize) -> (Vec<Vec<f32>>, Vec<bool>) {
        let mut vectors = Vec::new();
        let mut risk = Vec::new();
        for i in 0..count {
            let angle = i as f32 * 0.7;
            let inside = i % 2 == 0;
            let radius = if inside { 0.3 } else { 1.2 } + (i % 5) as f32 * 0.05;
            vectors.push(vec![radius * angle.cos(), radius * angle.sin(), 0.1]);
            risk.push(inside);
        }
        (vectors, risk)
    }

    #[test]
    fn the_machine_draws_a_curved_boundary_and_trains_the_same_every_time() {
        let (vectors, risk) = rings(300);
        let svm = Svm::train(&vectors, &risk);
        assert_eq!(svm, Svm::train(&vectors, &risk));
        let right = vectors
            .iter()
            .zip(&risk)
            .filter(|(v, r)| (svm.probability(v) > 0.5) == **r)
            .count();
        assert_eq!(right, 300);
        // Points it never saw, well inside and well outside.
        assert!(svm.probability(&[0.0, 0.1, 0.1]) > 0.9);
        assert!(svm.probability(&[1.5, -1.5, 0.1]) < 0.1);
        // It keeps only the lines near the boundary.
        assert!(svm.support_vectors() < 300, "{}", svm.support_vectors());
    }

    #[test]
    fn what_the_cache_stores_is_the_machine_itself() {
        let (vectors, risk) = rings(100);
        let svm = Svm::train(&vectors, &risk);
        let back = Svm::from_floats(&svm.to_floats(), 3).unwrap();
        assert_eq!(back, svm);
        // Cut short by a whole support vector, or by one number; read as
        // another encoder's: not a machine.
        let floats = svm.to_floats();
        assert_eq!(Svm::from_floats(&floats[..floats.len() - 4], 3), None);
        assert_eq!(Svm::from_floats(&floats[..floats.len() - 1], 3), None);
        assert_eq!(Svm::from_floats(&floats, 4), None);
    }

    #[test]
    fn the_dot_product_in_lanes_is_the_plain_one() {
        let x: Vec<f32> = (0..21).map(|i| i as f32 * 0.5).collect();
        let y: Vec<f32> = (0..21).map(|i| 3.0 - i as f32).collect();
        let plain: f32 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
        assert!((dot(&x, &y) - plain).abs() < 1e-3);
    }

    #[test]
    fn platt_s_sigmoid_rises_with_the_decision_value() {
        let values: Vec<f64> = (0..200).map(|i| (i as f64 - 100.0) / 20.0).collect();
        let risk: Vec<bool> = (0..200).map(|i| i >= 100 || i % 7 == 0).collect();
        let (a, b) = platt(&values, &risk);
        let p = |f: f64| 1.0 / (1.0 + (a * f + b).exp());
        assert!(a < 0.0);
        assert!(p(3.0) > 0.9 && p(-3.0) < 0.3 && p(0.0) > 0.3 && p(0.0) < 0.8);
    }
}
