//! The gRPC `grpc-timeout` request header: how long the caller will wait.
//!
//! kube-apiserver sets it from its per-call context deadline (the EncryptionConfiguration's
//! `timeout`, 3 s by default). The plugin answers by the earlier of that deadline and its own
//! `openbao.timeout`, so work the caller has already given up on is never started.

use std::time::Duration;

/// Parses a `grpc-timeout` value: 1 to 8 ASCII digits and one unit (`H` hours, `M` minutes,
/// `S` seconds, `m` milliseconds, `u` microseconds, `n` nanoseconds), as the gRPC HTTP/2
/// protocol defines it. Anything else is `None`, and the caller's deadline is then unknown.
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    // Bytes, not chars: the last byte of a multi-byte character is no unit either.
    let (&unit, digits) = value.as_bytes().split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount = digits
        .iter()
        .fold(0_u64, |total, digit| total * 10 + u64::from(digit - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(amount * 3_600),
        b'M' => Duration::from_secs(amount * 60),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_of_the_protocol_parses() {
        assert_eq!(
            parse_grpc_timeout("2999m"),
            Some(Duration::from_millis(2_999))
        );
        assert_eq!(parse_grpc_timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_grpc_timeout("1M"), Some(Duration::from_secs(60)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3_600)));
        assert_eq!(parse_grpc_timeout("250u"), Some(Duration::from_micros(250)));
        assert_eq!(
            parse_grpc_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        assert_eq!(parse_grpc_timeout("0m"), Some(Duration::ZERO));
    }

    #[test]
    fn malformed_values_are_unknown_deadlines() {
        for bad in [
            "",
            "m",
            "5",
            "5s",
            "123456789m",
            "-5m",
            "5 m",
            "5mm",
            "٣m",
            "5µ",
        ] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }
}
