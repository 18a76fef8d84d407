//! The formats between dmucd and its shims, each with its writer and its reader side by side
//! so they cannot drift apart:
//! - [`spec`]: the launch spec (a file the daemon writes, the shim maps and reads in place);
//! - [`line`]: the lines on the shim link, both ways.
//!
//! No std and no allocator (the shim has neither); writers take a sink (`FnMut(&[u8])`),
//! readers borrow what they read.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod line;
pub mod spec;

/// A decimal number without sign or spaces, as both formats write them.
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &c| {
        c.is_ascii_digit()
            .then_some(())
            .and_then(|_| acc.checked_mul(10)?.checked_add(u64::from(c - b'0')))
    })
}

/// A decimal number, possibly negative.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    match s.strip_prefix(b"-") {
        Some(rest) => parse_u64(rest)
            .and_then(|n| i64::try_from(n).ok())
            .map(|n| -n),
        None => parse_u64(s).and_then(|n| i64::try_from(n).ok()),
    }
}

/// Writes `n` in decimal.
pub fn put_u64(out: &mut impl FnMut(&[u8]), mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out(&digits[i..]);
}

/// Writes `n` in decimal, with a `-` when negative.
pub fn put_i64(out: &mut impl FnMut(&[u8]), n: i64) {
    if n < 0 {
        out(b"-");
    }
    put_u64(out, n.unsigned_abs());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut dyn FnMut(&[u8]))) -> Vec<u8> {
        let mut v = Vec::new();
        f(&mut |b| v.extend_from_slice(b));
        v
    }

    #[test]
    fn numbers_go_both_ways() {
        for n in [0u64, 7, 10, 4_294_967_295, u64::MAX] {
            let s = text(|o| put_u64(&mut |b| o(b), n));
            assert_eq!(s, n.to_string().as_bytes());
            assert_eq!(parse_u64(&s), Some(n));
        }
        for n in [0i64, -1, 255, i64::MIN + 1, i64::MAX] {
            let s = text(|o| put_i64(&mut |b| o(b), n));
            assert_eq!(s, n.to_string().as_bytes());
            assert_eq!(parse_i64(&s), Some(n));
        }
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"1x"), None);
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_i64(b"-"), None);
    }
}
