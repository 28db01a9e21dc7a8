//! What a function may reach over outgoing HTTP: its allow-list of origins and the limits of
//! its outgoing requests (`DeploySpec::outbound`). Nothing is allowed by default.
//!
//! An origin is `scheme://host[:port]`: `https://api.example.com`, `https://*.example.com` (any
//! subdomain, not the domain itself), `http://127.0.0.1:9000`. The port defaults to the
//! scheme's (80, 443). A host that resolves to a loopback, private, link-local or metadata
//! address is refused unless an entry names that address literally (see
//! [`is_internal`] and [`AllowList::names_address`]).

use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::time::Duration;

/// Entries in one allow-list.
const MAX_ORIGINS: usize = 100;

/// A function's outgoing HTTP: the allow-list and the limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundSpec {
    /// Origins the function may call; empty: none.
    pub allow: Vec<String>,
    /// Time to open the connection (TCP and TLS).
    pub connect_timeout_ms: u64,
    /// Time from sending the request to the response's headers (including opening a
    /// connection when none is pooled).
    pub first_byte_timeout_ms: u64,
    /// Longest silence while the response body streams.
    pub between_bytes_timeout_ms: u64,
    /// Outgoing requests of this function in flight at once (across its instances on a node).
    pub max_concurrent: u32,
    /// Largest response body a guest may read.
    pub max_response_bytes: u64,
}

impl Default for OutboundSpec {
    /// Generous enough for a payment API, short enough that a hung upstream does not hold an
    /// instance for the whole invocation: 5 s to connect, 30 s to the first byte, 30 s between
    /// bytes, 64 requests at once, 16 MiB per response. Each is capped by the invocation's
    /// remaining time anyway.
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            connect_timeout_ms: 5_000,
            first_byte_timeout_ms: 30_000,
            between_bytes_timeout_ms: 30_000,
            max_concurrent: 64,
            max_response_bytes: 16 << 20,
        }
    }
}

/// One parsed allow-list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub https: bool,
    pub host: HostPattern,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// One host name, lowercase.
    Name(String),
    /// `*.suffix`: any name ending in `.suffix`.
    Subdomains(String),
    /// An address written literally: also reachable when it is internal.
    Address(IpAddr),
}

impl Origin {
    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid = |why: &str| Err(format!("invalid outbound origin `{text}`: {why}"));
        let (https, rest) = if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (false, rest)
        } else {
            return invalid("it must start with `http://` or `https://`");
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
            return invalid("write only scheme, host and port (no path, query or user)");
        }
        let Some((host, port)) = split_host_port(rest) else { return invalid("the port is not a number 1-65535") };
        let port = port.unwrap_or(if https { 443 } else { 80 });
        let host = host.to_ascii_lowercase();
        let host = if let Some(suffix) = host.strip_prefix("*.") {
            if !valid_name(suffix) {
                return invalid("the part after `*.` is not a host name");
            }
            HostPattern::Subdomains(suffix.to_owned())
        } else if let Ok(address) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            HostPattern::Address(address)
        } else if valid_name(&host) {
            HostPattern::Name(host)
        } else {
            return invalid("the host is not a host name, `*.name` or an IP address");
        };
        Ok(Self { https, host, port })
    }

    /// Whether a request to `host` (lowercase, an IP literal without brackets) matches.
    fn matches(&self, https: bool, host: &str, port: u16) -> bool {
        if self.https != https || self.port != port {
            return false;
        }
        match &self.host {
            HostPattern::Name(name) => name == host,
            HostPattern::Subdomains(suffix) => {
                host.len() > suffix.len() + 1
                    && host.ends_with(suffix.as_str())
                    && host[..host.len() - suffix.len()].ends_with('.')
            }
            HostPattern::Address(address) => host.parse::<IpAddr>().is_ok_and(|h| h == *address),
        }
    }
}

/// `host[:port]`, with IPv6 literals in brackets.
fn split_host_port(text: &str) -> Option<(&str, Option<u16>)> {
    let port_at = if text.starts_with('[') { text.find("]:").map(|i| i + 1) } else { text.rfind(':') };
    match port_at {
        Some(i) => {
            let port: u16 = text[i + 1..].parse().ok().filter(|p| *p != 0)?;
            Some((&text[..i], Some(port)))
        }
        None => Some((text, None)),
    }
}

fn valid_name(name: &str) -> bool {
    (1..=253).contains(&name.len())
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl OutboundSpec {
    pub fn validate(&self) -> Result<(), String> {
        if self.allow.len() > MAX_ORIGINS {
            return Err(format!("outbound.allow: at most {MAX_ORIGINS} origins"));
        }
        for origin in &self.allow {
            Origin::parse(origin).map_err(|e| format!("outbound.allow: {e}"))?;
        }
        let timeouts = [
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("first_byte_timeout_ms", self.first_byte_timeout_ms),
            ("between_bytes_timeout_ms", self.between_bytes_timeout_ms),
        ];
        for (field, ms) in timeouts {
            if !(1..=super::limits::MAX_TIMEOUT_MS).contains(&ms) {
                return Err(format!("outbound.{field} must be 1-{} ms", super::limits::MAX_TIMEOUT_MS));
            }
        }
        if !(1..=10_000).contains(&self.max_concurrent) {
            return Err("outbound.max_concurrent must be 1-10000".into());
        }
        if !(1..=1 << 30).contains(&self.max_response_bytes) {
            return Err("outbound.max_response_bytes must be 1 B - 1 GiB".into());
        }
        Ok(())
    }

    /// The parsed allow-list (entries that do not parse were refused at deploy time).
    pub fn origins(&self) -> Vec<Origin> {
        self.allow.iter().filter_map(|o| Origin::parse(o).ok()).collect()
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub fn first_byte_timeout(&self) -> Duration {
        Duration::from_millis(self.first_byte_timeout_ms)
    }

    pub fn between_bytes_timeout(&self) -> Duration {
        Duration::from_millis(self.between_bytes_timeout_ms)
    }
}

/// Matches requests against a parsed allow-list.
#[derive(Debug, Clone, Default)]
pub struct AllowList(Vec<Origin>);

impl AllowList {
    pub fn new(spec: &OutboundSpec) -> Self {
        Self(spec.origins())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `scheme://host:port` is on the list (`host` lowercase, IPv6 without brackets).
    pub fn allows(&self, https: bool, host: &str, port: u16) -> bool {
        self.0.iter().any(|o| o.matches(https, host, port))
    }

    /// Whether an entry names `address` literally, on any port: a name resolving to it may then
    /// be connected to (the resolver does not know the port).
    pub fn names_address(&self, address: IpAddr) -> bool {
        self.0.iter().any(|o| o.host == HostPattern::Address(address))
    }
}

/// Loopback, private, link-local (which holds the cloud metadata address 169.254.169.254),
/// unique-local, unspecified and multicast addresses: what a request from a function must not
/// reach through a name (server-side request forgery), unless allowed literally.
pub fn is_internal(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                // 100.64.0.0/10, carrier-grade NAT: private in practice.
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // fc00::/7, unique local
                || (first & 0xffc0) == 0xfe80 // fe80::/10, link local
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> AllowList {
        AllowList::new(&OutboundSpec { allow: entries.iter().map(|e| (*e).to_owned()).collect(), ..Default::default() })
    }

    #[test]
    fn origins_parse_with_default_ports() {
        let o = Origin::parse("https://API.example.com").unwrap();
        assert_eq!(o, Origin { https: true, host: HostPattern::Name("api.example.com".into()), port: 443 });
        let o = Origin::parse("http://127.0.0.1:9000/").unwrap();
        assert_eq!(o.host, HostPattern::Address("127.0.0.1".parse().unwrap()));
        assert_eq!(o.port, 9000);
        assert_eq!(Origin::parse("http://[::1]:8080").unwrap().host, HostPattern::Address("::1".parse().unwrap()));
        for bad in [
            "api.example.com",
            "ftp://x",
            "https://",
            "https://x/path",
            "https://u@x",
            "https://x:0",
            "https://x:99999",
            "https://*.",
            "https://a_b",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn requests_match_scheme_host_and_port() {
        let l = list(&["https://api.example.com", "https://*.svc.example", "http://127.0.0.1:9000"]);
        assert!(l.allows(true, "api.example.com", 443));
        assert!(!l.allows(false, "api.example.com", 80), "scheme is part of the origin");
        assert!(!l.allows(true, "api.example.com", 8443), "so is the port");
        assert!(l.allows(true, "a.svc.example", 443));
        assert!(l.allows(true, "a.b.svc.example", 443));
        assert!(!l.allows(true, "svc.example", 443), "the wildcard is for subdomains only");
        assert!(!l.allows(true, "evilsvc.example", 443));
        assert!(l.allows(false, "127.0.0.1", 9000));
        assert!(!l.allows(false, "127.0.0.1", 9001));
        assert!(l.names_address("127.0.0.1".parse().unwrap()));
        assert!(!l.names_address("127.0.0.2".parse().unwrap()));
        assert!(!list(&[]).allows(true, "api.example.com", 443), "nothing by default");
    }

    #[test]
    fn internal_addresses_are_recognised() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_internal(internal.parse().unwrap()), "{internal}");
        }
        for public in ["93.184.216.34", "172.32.0.1", "8.8.8.8", "2606:4700::1111"] {
            assert!(!is_internal(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn limits_are_checked() {
        assert!(OutboundSpec::default().validate().is_ok());
        let spec = OutboundSpec { max_concurrent: 0, ..Default::default() };
        assert!(spec.validate().unwrap_err().contains("max_concurrent"));
        let spec = OutboundSpec { allow: vec!["nope".into()], ..Default::default() };
        assert!(spec.validate().unwrap_err().contains("outbound.allow"));
    }
}
