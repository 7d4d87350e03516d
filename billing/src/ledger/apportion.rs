//! Splitting an amount of minor units by weights so that the parts add up to
//! it exactly: the largest-remainder (Hamilton) method. Used for a charge
//! whose invoice lines do not add up to what Stripe settled (a discount, a
//! conversion into another currency) and for patronage shares.

/// `total` split in proportion to `weights`, in the same order: each part is
/// `total × w / Σw` rounded down, and the minor units left over go one each
/// to the parts with the largest remainders (the earlier part on a tie), so
/// the parts always sum to `total`. `None` if the weights sum to zero.
pub fn apportion(total: i64, weights: &[i64]) -> Option<Vec<i64>> {
    let mut sum: i128 = weights.iter().map(|w| i128::from(*w)).sum();
    if sum == 0 {
        return None;
    }
    // With a negative sum, negate every weight and the sum: the shares are the same.
    let sign: i128 = if sum < 0 { -1 } else { 1 };
    sum *= sign;
    let total = i128::from(total);
    let mut parts = Vec::with_capacity(weights.len());
    let mut remainders = Vec::with_capacity(weights.len());
    for (i, w) in weights.iter().enumerate() {
        let product = total * i128::from(*w) * sign;
        parts.push(product.div_euclid(sum));
        remainders.push((product.rem_euclid(sum), i));
    }
    let mut left = total - parts.iter().sum::<i128>();
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, i) in remainders {
        if left == 0 {
            break;
        }
        parts[i] += 1;
        left -= 1;
    }
    // Each part lies between 0 and total × w / Σw + 1, so it fits where total did
    // unless a weight is negative and larger than the sum; refuse that case.
    parts.into_iter().map(|p| i64::try_from(p).ok()).collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn one_cent_among_three_equal_shares_goes_to_the_first() {
        assert_eq!(apportion(1, &[1, 1, 1]), Some(vec![1, 0, 0]));
        assert_eq!(apportion(100, &[1, 1, 1]), Some(vec![34, 33, 33]));
        assert_eq!(apportion(-100, &[1, 1, 1]), Some(vec![-33, -33, -34]));
    }

    #[test]
    fn the_largest_remainder_gets_the_cent() {
        // 10 × 2/3 = 6.67 and 10 × 1/3 = 3.33: the first rounds up.
        assert_eq!(apportion(10, &[2, 1]), Some(vec![7, 3]));
        assert_eq!(apportion(2397, &[2000, 500]), Some(vec![1918, 479]));
    }

    #[test]
    fn weights_that_sum_to_zero_have_no_shares() {
        assert_eq!(apportion(10, &[]), None);
        assert_eq!(apportion(10, &[5, -5]), None);
    }

    proptest! {
        #[test]
        fn the_parts_always_sum_to_the_total(
            total in -1_000_000_000_000i64..1_000_000_000_000,
            weights in proptest::collection::vec(0i64..1_000_000, 1..12),
        ) {
            prop_assume!(weights.iter().sum::<i64>() > 0);
            let parts = apportion(total, &weights).unwrap();
            prop_assert_eq!(parts.iter().sum::<i64>(), total);
            let sum: i64 = weights.iter().sum();
            for (p, w) in parts.iter().zip(&weights) {
                // No part is more than one minor unit from its exact share.
                let exact = total as f64 * *w as f64 / sum as f64;
                prop_assert!((*p as f64 - exact).abs() < 1.0 + 1e-6 * exact.abs(), "{} vs {}", p, exact);
            }
        }
    }
}
