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

pub fn rsin_urn(rsin: &str) -> String {
    format!("urn:nld:rsin:{rsin}")
}

/// Whom a party URN names: a person by BSN, an organisation by KVK number (optionally one of
/// its vestigingen) or by RSIN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Urn {
    Bsn(String),
    Kvk { kvk: String, vestiging: Option<String> },
    Rsin(String),
}

/// Parse a party URN (`urn:nld:brp:bsn:…`, `urn:nld:hr:kvknummer:…[:vestigingsnummer:…]`,
/// `urn:nld:rsin:…`), checking the number; the error says what is wrong without repeating it.
pub fn parse_urn(urn: &str) -> Result<Urn, &'static str> {
    let parts: Vec<&str> = urn.split(':').collect();
    match parts.as_slice() {
        ["urn", "nld", "brp", "bsn", bsn] if elfproef(bsn) => Ok(Urn::Bsn(bsn.to_string())),
        ["urn", "nld", "brp", "bsn", _] => Err("the BSN fails the elfproef"),
        ["urn", "nld", "hr", "kvknummer", kvk] if is_kvk(kvk) => Ok(Urn::Kvk { kvk: kvk.to_string(), vestiging: None }),
        ["urn", "nld", "hr", "kvknummer", kvk, "vestigingsnummer", v]
            if is_kvk(kvk) && v.len() == 12 && v.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Ok(Urn::Kvk { kvk: kvk.to_string(), vestiging: Some(v.to_string()) })
        }
        ["urn", "nld", "hr", "kvknummer", ..] => Err("a KVK number has 8 digits and a vestigingsnummer 12"),
        ["urn", "nld", "rsin", rsin] if elfproef(rsin) => Ok(Urn::Rsin(rsin.to_string())),
        ["urn", "nld", "rsin", _] => Err("the RSIN fails the elfproef"),
        _ => Err("not a BSN, KVK (with vestigingsnummer) or RSIN URN"),
    }
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
    fn party_urns() {
        assert_eq!(parse_urn("urn:nld:brp:bsn:569312863"), Ok(Urn::Bsn("569312863".into())));
        assert!(parse_urn("urn:nld:brp:bsn:123456789").is_err());
        assert_eq!(
            parse_urn("urn:nld:hr:kvknummer:69599084:vestigingsnummer:000038509504"),
            Ok(Urn::Kvk { kvk: "69599084".into(), vestiging: Some("000038509504".into()) })
        );
        assert!(parse_urn("urn:nld:hr:kvknummer:69599084:vestigingsnummer:1").is_err());
        assert_eq!(parse_urn("urn:nld:rsin:111222333"), Ok(Urn::Rsin("111222333".into())));
        assert!(parse_urn("urn:nld:klant:klantnummer:610541501").is_err());
    }

    #[test]
    fn mask_hides_all_but_two() {
        assert_eq!(mask("569312863"), "*******63");
    }
}
