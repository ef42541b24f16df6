//! Dutch identifiers: BSN and RSIN (elfproef), KVK number (8 digits), and their URNs.

/// The elfproef for BSN and RSIN: 9 digits d1..d9 with 9·d1 + 8·d2 + … + 2·d8 − d9 ≡ 0 (mod 11),
/// and not all zeros.
pub fn elfproef(value: &str) -> bool {
    let digits: Vec<i64> = value.chars().filter_map(|c| c.to_digit(10).map(i64::from)).collect();
    if value.len() != 9 || digits.len() != 9 || digits.iter().all(|d| *d == 0) {
        return false;
    }
    let sum: i64 = digits[..8].iter().zip((2..=9).rev()).map(|(d, w)| d * w).sum::<i64>() - digits[8];
    sum % 11 == 0
}

pub fn is_kvk(value: &str) -> bool {
    value.len() == 8 && value.bytes().all(|b| b.is_ascii_digit())
}

pub fn bsn_urn(bsn: &str) -> String {
    format!("urn:nld:brp:bsn:{bsn}")
}

pub fn kvk_urn(kvk: &str) -> String {
    format!("urn:nld:hr:kvknummer:{kvk}")
}

/// Mask a BSN (or any identifier) for logs: only the last two characters stay.
pub fn mask(value: &str) -> String {
    let n = value.chars().count();
    value.chars().enumerate().map(|(i, c)| if i + 2 < n { '*' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elfproef_accepts_valid_and_rejects_invalid() {
        assert!(elfproef("569312863")); // NL Portal example BSN
        assert!(elfproef("111222333"));
        assert!(!elfproef("123456789"));
        assert!(!elfproef("000000000"));
        assert!(!elfproef("56931286"));
        assert!(!elfproef("56931286a"));
    }

    #[test]
    fn kvk_is_eight_digits() {
        assert!(is_kvk("12345678"));
        assert!(!is_kvk("1234567"));
        assert!(!is_kvk("1234567a"));
    }

    #[test]
    fn mask_hides_all_but_two() {
        assert_eq!(mask("569312863"), "*******63");
    }
}
