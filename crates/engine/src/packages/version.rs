//! Debian version ordering.
//!
//! Written here rather than taken from a crate: the algorithm is dpkg's
//! `verrevcmp`, some forty lines, and the crates that offer it (such as
//! `debversion`) bring a version type, parsing errors and dependencies for
//! what the engine needs as one total `Ordering` over whatever strings a host
//! prints. It is checked below against `dpkg --compare-versions` results.

use std::cmp::Ordering;

/// Compares two Debian versions, `[EPOCH:]UPSTREAM[-REVISION]`, the way
/// `dpkg --compare-versions` does: epochs numerically, then upstream and
/// revision part by part, runs of digits numerically and other characters
/// with letters before non-letters and `~` before everything, even the end
/// (`1.0~rc1` < `1.0` < `1.0a` < `1.0+`).
///
/// Any string is accepted: an epoch that is not a number is read as part of
/// the upstream version, and nothing panics. It also orders kernel release
/// strings (`6.1.0-18-amd64` < `6.1.0-21-amd64`) and, near enough for
/// picking the newest of several, rpm and apk versions.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (epoch_a, upstream_a, revision_a) = split(a.trim());
    let (epoch_b, upstream_b, revision_b) = split(b.trim());
    compare_numbers(epoch_a.as_bytes(), epoch_b.as_bytes())
        .then_with(|| verrevcmp(upstream_a.as_bytes(), upstream_b.as_bytes()))
        .then_with(|| verrevcmp(revision_a.as_bytes(), revision_b.as_bytes()))
}

fn split(version: &str) -> (&str, &str, &str) {
    let (epoch, rest) = match version.split_once(':') {
        Some((epoch, rest)) if !epoch.is_empty() && epoch.bytes().all(|c| c.is_ascii_digit()) => {
            (epoch, rest)
        }
        _ => ("0", version),
    };
    let (upstream, revision) = rest.rsplit_once('-').unwrap_or((rest, ""));
    (epoch, upstream, revision)
}

/// Digit strings, by value, however long.
fn compare_numbers(a: &[u8], b: &[u8]) -> Ordering {
    let a = strip_zeros(a);
    let b = strip_zeros(b);
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn strip_zeros(digits: &[u8]) -> &[u8] {
    let zeros = digits.iter().take_while(|c| **c == b'0').count();
    digits.get(zeros..).unwrap_or_default()
}

/// dpkg's weight of a character in a non-digit run: the end of the string
/// (and a digit, where the other string's run goes on) is 0, `~` below it,
/// letters by their code, anything else after all letters.
fn weight(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

fn verrevcmp(a: &[u8], b: &[u8]) -> Ordering {
    let non_digit = |s: &[u8], i: usize| s.get(i).is_some_and(|c| !c.is_ascii_digit());
    let digit = |s: &[u8], i: usize| s.get(i).is_some_and(u8::is_ascii_digit);
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while non_digit(a, i) || non_digit(b, j) {
            let (wa, wb) = (weight(a.get(i).copied()), weight(b.get(j).copied()));
            if wa != wb {
                return wa.cmp(&wb);
            }
            i += 1;
            j += 1;
        }
        let start_a = i;
        while digit(a, i) {
            i += 1;
        }
        let start_b = j;
        while digit(b, j) {
            j += 1;
        }
        let numbers = compare_numbers(
            a.get(start_a..i).unwrap_or_default(),
            b.get(start_b..j).unwrap_or_default(),
        );
        if numbers.is_ne() {
            return numbers;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::{Equal, Greater, Less};

    /// Each expected result is what `dpkg --compare-versions` (dpkg 1.21,
    /// Debian 12) answered for the pair; most versions are from the recorded
    /// apt output.
    const DPKG: &[(&str, &str, Ordering)] = &[
        ("1.0", "1.0", Equal),
        ("1.0", "1.1", Less),
        ("1.0~rc1", "1.0", Less),
        ("1.0~~", "1.0~", Less),
        ("1.0~", "1.0", Less),
        ("1.0", "1.0a", Less),
        ("1.0", "1.0+", Less),
        ("1.0a", "1.0+", Less),
        ("1:1.0", "2.0", Greater),
        ("0:1.0", "1.0", Equal),
        ("1.0-1", "1.0-2", Less),
        ("1.0-1~deb12u1", "1.0-1", Less),
        ("3.0.11-1~deb12u1", "3.0.11-1~deb12u2", Less),
        ("3.0.19-1~deb12u2", "3.0.22-1~deb12u2", Less),
        ("20230311+deb12u1", "20250419~deb12u2", Less),
        ("2025b-0+deb12u2", "2026f-0+deb12u1", Less),
        ("1:9.2p1-2+deb12u6", "1:9.2p1-2+deb12u10", Less),
        ("5.2.15-2+b8", "5.2.15-2+b13", Less),
        ("1:2.66-4+deb12u2+b2", "1:2.66-4+deb12u3+b1", Less),
        ("1.9-1", "1:2.0~rc1-1", Less),
        ("6.1.0-18-amd64", "6.1.0-21-amd64", Less),
        ("5.10.0-9-amd64", "5.10.0-10-amd64", Less),
        ("1.0", "1.0-0", Equal),
        ("10", "9", Greater),
        ("010", "10", Equal),
        ("1.2.3", "1.2.10", Less),
        ("a", "b", Less),
        ("1.0.0", "1.0", Greater),
        ("1.0", "1.0.", Less),
        ("2.74.6-2+deb12u8", "2.74.6-2+deb12u9", Less),
        ("248+deb12u1", "248+deb12u2", Less),
        ("1.65.2", "1.65.2+deb12u1", Less),
        ("7.88.1-10+deb12u5", "7.88.1-10+deb12u7", Less),
        ("2:9.0.1000-4", "2:9.0.1378-2", Less),
        ("1.0-1ubuntu1", "1.0-1ubuntu1.1", Less),
        ("2.0-1", "10.0-1", Less),
        ("1.0-a", "1.0-1", Greater),
        ("1.0~beta", "1.0~alpha", Greater),
    ];

    #[test]
    fn agrees_with_dpkg() {
        for (a, b, expected) in DPKG {
            assert_eq!(compare_versions(a, b), *expected, "{a} vs {b}");
            assert_eq!(compare_versions(b, a), expected.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn odd_input_does_not_panic() {
        assert_eq!(compare_versions("", ""), Equal);
        assert_eq!(compare_versions("", "0"), Equal);
        assert_eq!(compare_versions("~", ""), Less);
        assert_eq!(compare_versions("x:1", "1"), Greater);
        assert_eq!(
            compare_versions("99999999999999999999999:1", "1:1"),
            Greater
        );
        assert_eq!(
            compare_versions(
                "1.123456789012345678901234567890",
                "1.123456789012345678901234567891"
            ),
            Less
        );
        assert_eq!(compare_versions("é", "e"), Greater);
        assert_eq!(compare_versions(" 1.0 ", "1.0"), Equal);
    }

    mod property {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn a_total_order(a in "[0-9a-z.+~:-]{0,12}", b in "[0-9a-z.+~:-]{0,12}", c in "[0-9a-z.+~:-]{0,12}") {
                prop_assert_eq!(compare_versions(&a, &a), Ordering::Equal);
                prop_assert_eq!(compare_versions(&a, &b), compare_versions(&b, &a).reverse());
                if compare_versions(&a, &b).is_le() && compare_versions(&b, &c).is_le() {
                    prop_assert!(compare_versions(&a, &c).is_le());
                }
            }

            #[test]
            fn never_panics(a in "(?s).{0,40}", b in "(?s).{0,40}") {
                let _ = compare_versions(&a, &b);
            }
        }
    }
}
