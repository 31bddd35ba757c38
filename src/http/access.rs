//! Who may reach the dashboard and the admin endpoints: an IP allow-list.
//!
//! The client address is the socket peer. `X-Forwarded-For` is believed only when the peer
//! is a listed trusted proxy, and then the nearest address in it that is not itself a
//! trusted proxy is the client (so a client cannot spoof its way in by sending the header
//! itself). An empty list allows nobody.
//!
//! The lists come from the binary's command line (`--dashboard-allowed-ips`,
//! `--dashboard-trusted-proxies`, or the environment variables `DASHBOARD_ALLOWED_IPS`
//! and `DASHBOARD_TRUSTED_PROXIES`), parsed with [`IpList::parse`], so an invalid entry
//! stops start-up; this module reads no environment.

use std::net::IpAddr;
use std::str::FromStr;

use actix_web::HttpRequest;

/// An address or a CIDR range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` is inside.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr = canonical(
            IpAddr::from_str(addr)
                .map_err(|_| format!("\"{s}\" is not an IP address or CIDR range"))?,
        );
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("\"{s}\": prefix length must be 0..={max}"))?,
        };
        Ok(Self { addr, prefix })
    }
}

/// A comma-separated list of addresses and ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpList(Vec<IpNet>);

impl IpList {
    /// Parses `a, b/24, ::1`; every entry must be valid.
    pub fn parse(s: &str) -> Result<Self, String> {
        s.split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(IpNet::from_str)
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// Whether `ip` is in any entry.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }
}

/// The allow-list and the proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPolicy {
    /// Who may reach the protected endpoints.
    pub allowed: IpList,
    /// Reverse proxies in front of bkvy.
    pub trusted_proxies: IpList,
}

impl Default for AccessPolicy {
    /// Loopback only ([`AccessPolicy::DEFAULT_ALLOWED`]), no trusted proxy.
    fn default() -> Self {
        Self {
            allowed: IpList::parse(Self::DEFAULT_ALLOWED).unwrap_or_default(),
            trusted_proxies: IpList::default(),
        }
    }
}

impl AccessPolicy {
    /// `DASHBOARD_ALLOWED_IPS` default: the loopback addresses.
    pub const DEFAULT_ALLOWED: &'static str = "127.0.0.1,::1";

    /// The client's address as far as it can be trusted.
    pub fn client_ip(&self, peer: Option<IpAddr>, forwarded_for: Option<&str>) -> Option<IpAddr> {
        let peer = canonical(peer?);
        if !self.trusted_proxies.contains(peer) {
            return Some(peer);
        }
        let Some(header) = forwarded_for else {
            return Some(peer);
        };
        // Walk from the nearest hop outward; the first address that is not a trusted proxy
        // is the client. An unparsable hop ends the walk: trust nothing beyond it.
        let mut client = peer;
        for hop in header.rsplit(',') {
            match IpAddr::from_str(hop.trim()) {
                Ok(ip) => {
                    client = canonical(ip);
                    if !self.trusted_proxies.contains(client) {
                        break;
                    }
                }
                Err(_) => return None,
            }
        }
        Some(client)
    }

    /// Whether the request may pass, and the address it was judged by.
    ///
    /// Every `X-Forwarded-For` line counts, combined in order as one list (RFC 9110: a
    /// repeated list header is one list), so a spoofed first line cannot hide the line a
    /// trusted proxy appended. A line that is not visible ASCII trusts nobody.
    pub fn check(&self, req: &HttpRequest) -> (bool, Option<IpAddr>) {
        let peer = req.peer_addr().map(|a| a.ip());
        let mut lines = Vec::new();
        for v in req.headers().get_all("x-forwarded-for") {
            match v.to_str() {
                Ok(line) => lines.push(line),
                Err(_) => return (false, None),
            }
        }
        let forwarded = (!lines.is_empty()).then(|| lines.join(","));
        let ip = self.client_ip(peer, forwarded.as_deref());
        (ip.is_some_and(|ip| self.allowed.contains(ip)), ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_matching_for_v4_and_v6() {
        let list = IpList::parse("10.0.0.0/8, 192.168.1.7, fd00::/8, ::1").unwrap();
        assert!(list.contains(ip("10.20.30.40")));
        assert!(list.contains(ip("192.168.1.7")));
        assert!(!list.contains(ip("192.168.1.8")));
        assert!(list.contains(ip("fd12::1")));
        assert!(list.contains(ip("::1")));
        assert!(list.contains(ip("::ffff:10.1.1.1")), "IPv4-mapped");
        assert!(!list.contains(ip("11.0.0.1")));
        assert!(IpList::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
    }

    #[test]
    fn invalid_entries_are_errors() {
        assert!(IpList::parse("127.0.0.1, nonsense").is_err());
        assert!(IpList::parse("10.0.0.0/33").is_err());
        assert!(IpList::parse("*").is_err());
        assert_eq!(IpList::parse("").unwrap(), IpList::default());
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let policy = AccessPolicy {
            allowed: IpList::parse("127.0.0.1").unwrap(),
            trusted_proxies: IpList::parse("10.0.0.5").unwrap(),
        };
        // Spoof from an untrusted peer: the header is ignored.
        assert_eq!(
            policy.client_ip(Some(ip("203.0.113.9")), Some("127.0.0.1")),
            Some(ip("203.0.113.9"))
        );
        // Through the trusted proxy: the nearest untrusted hop is the client.
        assert_eq!(
            policy.client_ip(Some(ip("10.0.0.5")), Some("1.2.3.4, 127.0.0.1")),
            Some(ip("127.0.0.1"))
        );
        assert_eq!(
            policy.client_ip(Some(ip("10.0.0.5")), Some("127.0.0.1, 198.51.100.1")),
            Some(ip("198.51.100.1")),
            "a client cannot prepend its way in"
        );
        assert_eq!(
            policy.client_ip(Some(ip("10.0.0.5")), Some("garbage")),
            None
        );
    }

    fn through_proxy(lines: &[&str]) -> HttpRequest {
        let mut req =
            actix_web::test::TestRequest::default().peer_addr("10.0.0.5:4000".parse().unwrap());
        for line in lines {
            req = req.append_header(("x-forwarded-for", *line));
        }
        req.to_http_request()
    }

    #[test]
    fn every_forwarded_for_line_counts_so_a_spoofed_first_line_does_not_pass() {
        let policy = AccessPolicy {
            allowed: IpList::parse("127.0.0.1").unwrap(),
            trusted_proxies: IpList::parse("10.0.0.5").unwrap(),
        };
        // The client sent `127.0.0.1` itself; the proxy appended the real address on a
        // line of its own.
        let req = through_proxy(&["127.0.0.1", "198.51.100.1"]);
        assert_eq!(policy.check(&req), (false, Some(ip("198.51.100.1"))));
        let req = through_proxy(&["198.51.100.1", "127.0.0.1"]);
        assert_eq!(policy.check(&req), (true, Some(ip("127.0.0.1"))));
        let req = through_proxy(&[]);
        assert_eq!(policy.check(&req), (false, Some(ip("10.0.0.5"))));
        let bytes = actix_web::http::header::HeaderValue::from_bytes(b"127.0.0.1\xff").unwrap();
        let req = actix_web::test::TestRequest::default()
            .peer_addr("10.0.0.5:4000".parse().unwrap())
            .append_header(("x-forwarded-for", "127.0.0.1"))
            .append_header(("x-forwarded-for", bytes))
            .to_http_request();
        assert_eq!(policy.check(&req), (false, None));
    }
}
