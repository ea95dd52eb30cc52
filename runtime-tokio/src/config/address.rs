//! `host:port` listen addresses and the OpenBao URL, checked without DNS.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A parsed `host:port` listen address.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(super) struct ListenAddress {
    host: Host,
    port: u16,
}

#[derive(Clone, Debug, Eq, PartialEq)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

impl ListenAddress {
    /// Parses `host:port`, `[v6]:port`; the host is required and the port may be 0.
    pub(super) fn parse(text: &str) -> Result<Self, &'static str> {
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("must not contain whitespace or control characters");
        }
        if text.starts_with(':') {
            return Err("must name a host (use 0.0.0.0:PORT to listen on every interface)");
        }
        let (host, port) = split_host_port(text)?;
        let Some(port) = port else {
            return Err("must be host:port, such as 127.0.0.1:8081");
        };
        Ok(Self { host, port })
    }

    /// Whether both addresses would claim the same fixed endpoint.
    ///
    /// Port 0 never conflicts (each listener gets its own ephemeral port). Hosts compare as IP
    /// addresses (IPv4-mapped IPv6 unmapped) or case-insensitively as names; an unspecified
    /// address (`0.0.0.0`, `::`) overlaps every host on the same port. No name is resolved.
    pub(super) fn conflicts_with(&self, other: &Self) -> bool {
        if self.port == 0 || other.port == 0 || self.port != other.port {
            return false;
        }
        match (&self.host, &other.host) {
            (Host::Ip(a), Host::Ip(b)) => {
                let (a, b) = (unmap(*a), unmap(*b));
                a == b || a.is_unspecified() || b.is_unspecified()
            }
            (Host::Name(a), Host::Name(b)) => a.eq_ignore_ascii_case(b),
            (Host::Ip(ip), Host::Name(_)) | (Host::Name(_), Host::Ip(ip)) => ip.is_unspecified(),
        }
    }
}

/// Checks an OpenBao address and returns it normalized as `https://authority`.
pub(super) fn normalize_https_url(text: &str) -> Result<String, &'static str> {
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters");
    }
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err("must be an https:// URL, such as https://openbao.example:8200");
    };
    if scheme.eq_ignore_ascii_case("http") {
        return Err("must use https (plain http is refused)");
    }
    if !scheme.eq_ignore_ascii_case("https") {
        return Err("must use the https scheme");
    }
    if rest.contains('#') {
        return Err("must not have a fragment");
    }
    if rest.contains('?') {
        return Err("must not have a query");
    }
    let (authority, path) = rest
        .find('/')
        .map_or((rest, ""), |index| rest.split_at(index));
    if authority.contains('@') {
        return Err("must not contain user information");
    }
    let (_, port) = split_host_port(authority)?;
    if port == Some(0) {
        return Err("must not use port 0");
    }
    if !path.is_empty() && path != "/" {
        return Err("must not have a path (give the server root; mounts are configured apart)");
    }
    Ok(format!("https://{authority}"))
}

/// Splits `host[:port]`; brackets are required around an IPv6 host.
fn split_host_port(text: &str) -> Result<(Host, Option<u16>), &'static str> {
    let (host, port) = if let Some(bracketed) = text.strip_prefix('[') {
        let Some((inside, after)) = bracketed.split_once(']') else {
            return Err("has an unterminated [ in its host");
        };
        let Ok(ip) = inside.parse::<Ipv6Addr>() else {
            return Err("must have a valid IPv6 address inside [ ]");
        };
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or("must be host:port")?),
        };
        (Host::Ip(IpAddr::V6(ip)), port)
    } else {
        let (host, port) = match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        };
        if host.is_empty() {
            return Err("must name a host");
        }
        let host = if let Ok(ip) = host.parse::<Ipv4Addr>() {
            Host::Ip(IpAddr::V4(ip))
        } else if is_hostname(host) {
            Host::Name(host.to_owned())
        } else {
            return Err("must have a valid host name or IP address (IPv6 in [ ])");
        };
        (host, port)
    };
    let port = match port {
        None => None,
        Some(digits) => {
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err("must have a decimal port");
            }
            Some(
                digits
                    .parse::<u16>()
                    .map_err(|_| "must have a port between 0 and 65535")?,
            )
        }
    };
    Ok((host, port))
}

/// A DNS-style host name: dot-separated labels of ASCII letters, digits, `-` and `_`.
pub(super) fn is_hostname(text: &str) -> bool {
    text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn addr(text: &str) -> ListenAddress {
        ListenAddress::parse(text).unwrap()
    }

    #[test]
    fn listen_addresses_need_a_host_and_a_port() {
        assert!(ListenAddress::parse("127.0.0.1:8081").is_ok());
        assert!(ListenAddress::parse("[::1]:0").is_ok());
        assert!(ListenAddress::parse("localhost:9090").is_ok());
        assert!(ListenAddress::parse(":8081").is_err());
        assert!(ListenAddress::parse("127.0.0.1").is_err());
        assert!(ListenAddress::parse("::1:8081").is_err());
        assert!(ListenAddress::parse("127.0.0.1:65536").is_err());
        assert!(ListenAddress::parse("127.0.0.1:-1").is_err());
    }

    #[test]
    fn same_endpoint_conflicts_but_port_zero_never_does() {
        assert!(addr("127.0.0.1:8081").conflicts_with(&addr("[::ffff:127.0.0.1]:8081")));
        assert!(addr("LocalHost:8081").conflicts_with(&addr("localhost:8081")));
        assert!(addr("0.0.0.0:8081").conflicts_with(&addr("127.0.0.1:8081")));
        assert!(!addr("127.0.0.1:0").conflicts_with(&addr("127.0.0.1:0")));
        assert!(!addr("127.0.0.1:8081").conflicts_with(&addr("127.0.0.1:8082")));
        assert!(!addr("localhost:8081").conflicts_with(&addr("127.0.0.1:8081")));
    }

    #[test]
    fn openbao_urls_are_https_with_a_host_and_no_path() {
        assert_eq!(
            normalize_https_url("HTTPS://bao.example:8200/").unwrap(),
            "https://bao.example:8200"
        );
        assert_eq!(
            normalize_https_url("https://[::1]:8200").unwrap(),
            "https://[::1]:8200"
        );
        for bad in [
            "http://bao.example:8200",
            "bao.example:8200",
            "https://user@bao.example",
            "https://bao.example/v1",
            "https://bao.example?x=1",
            "https://bao.example#x",
            "https://:8200",
            "https://bao.example:0",
            "https://bao example",
        ] {
            assert!(normalize_https_url(bad).is_err(), "{bad}");
        }
    }
}
