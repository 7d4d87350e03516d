//! Randomness for identifiers, secrets and webhook chaos: a SplitMix64
//! generator seeded once from the operating system. Nothing here is secret
//! in a way that matters (a test-mode simulator), and a seeded generator keeps
//! the hot path free of system calls.

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A small, fast pseudo-random generator.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator seeded from the operating system.
    pub fn from_os() -> Result<Self, String> {
        getrandom::u64().map(Rng).map_err(|e| e.to_string())
    }

    /// A generator with a fixed seed, for tests.
    #[cfg(test)]
    pub fn seeded(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `p` (clamped to 0..=1).
    pub fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        // 53 random bits make a uniform float in [0, 1).
        let x = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        x < p
    }

    /// `len` characters of base 62.
    pub fn base62(&mut self, len: usize) -> String {
        (0..len).map(|_| BASE62[self.below(62)] as char).collect()
    }

    /// A new Stripe-style identifier: the prefix and a random tail of the
    /// length Stripe uses for that kind of object.
    pub fn id(&mut self, prefix: &str) -> String {
        let len = match prefix {
            "cus" | "prod" | "si" | "req" => 14,
            "cs_test" => 58,
            _ => 24,
        };
        format!("{prefix}_{}", self.base62(len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_stripes_prefix_and_differ() {
        let mut rng = Rng::seeded(7);
        let a = rng.id("cus");
        let b = rng.id("cus");
        assert!(a.starts_with("cus_") && a.len() == 18, "{a}");
        assert_ne!(a, b);
        assert!(rng.id("cs_test").starts_with("cs_test_"));
    }

    #[test]
    fn chance_honours_the_extremes() {
        let mut rng = Rng::seeded(1);
        assert!((0..1000).all(|_| !rng.chance(0.0)));
        assert!((0..1000).all(|_| rng.chance(1.0)));
        let hits = (0..10_000).filter(|_| rng.chance(0.5)).count();
        assert!((4000..6000).contains(&hits), "{hits}");
    }
}
