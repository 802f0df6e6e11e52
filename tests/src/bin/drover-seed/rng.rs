//! The seeder's one source of randomness: fastrand seeded from `--seed`,
//! with the few draws the fleet needs (uniform ranges, chances, hex ids,
//! samples), so a seed gives the same fleet every time.

pub(crate) struct Rng(fastrand::Rng);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(fastrand::Rng::with_seed(seed))
    }

    /// In [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        self.0.f64()
    }

    /// In [low, high).
    pub(crate) fn uniform(&mut self, (low, high): (f64, f64)) -> f64 {
        low + (high - low) * self.0.f64()
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.0.f64() < p
    }

    /// In [low, high).
    pub(crate) fn below(&mut self, low: u64, high: u64) -> u64 {
        self.0.u64(low..high)
    }

    pub(crate) fn u128(&mut self) -> u128 {
        self.0.u128(..)
    }

    /// `bits` random bits as lowercase hex (`bits` a multiple of 4).
    pub(crate) fn hex(&mut self, bits: u32) -> String {
        let mut out = String::with_capacity(bits as usize / 4);
        let mut left = bits;
        while left > 0 {
            let take = left.min(64);
            let word = self.0.u64(..) >> (64 - take);
            out.push_str(&format!("{word:0width$x}", width = take as usize / 4));
            left -= take;
        }
        out
    }

    /// A random UUID (version 4), as the agent makes a run_id.
    pub(crate) fn uuid_v4(&mut self) -> String {
        uuid::Builder::from_random_bytes(self.u128().to_le_bytes())
            .into_uuid()
            .to_string()
    }

    /// Which of `weights` (by index), drawn in proportion to them.
    pub(crate) fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u32 = weights.iter().sum();
        let mut draw = self.0.u32(0..total);
        for (i, w) in weights.iter().enumerate() {
            if draw < *w {
                return i;
            }
            draw -= w;
        }
        weights.len() - 1
    }

    /// `k` distinct indices of `0..n`, each set as `true`.
    pub(crate) fn sample(&mut self, n: usize, k: usize) -> Vec<bool> {
        let mut order: Vec<usize> = (0..n).collect();
        self.0.shuffle(&mut order);
        let mut chosen = vec![false; n];
        for i in order.into_iter().take(k) {
            chosen[i] = true;
        }
        chosen
    }
}
