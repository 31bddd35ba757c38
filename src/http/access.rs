//! Who may reach the dashboard and the admin endpoints: an IP allow-list, and a check of
//! the `Host` and `Origin` headers against DNS rebinding and cross-site requests.
//!
//! The client address is the socket peer. `X-Forwarded-For` is believed only when the peer
//! is a listed trusted proxy, and then the nearest address in it that is not itself a
//! trusted proxy is the client (so a client cannot spoof its way in by sending the header
//! itself). An empty list allows nobody.
//!
//! A browser can be made to send requests to bkvy from any web page: a page on another
//! site can POST to `http://127.0.0.1:10006/admin/reload` (a "simple" request needs no
//! permission), and a page on a name the attacker re-points at 127.0.0.1 (DNS rebinding)
//! is, to the browser, the same origin as bkvy and may read its answers. Both come from
//! the allow-listed machine itself, so the IP allow-list lets them through. So the
//! protected endpoints also check ([`AccessPolicy::check_site`]):
//!
//! - `Host` must be an IP address (no DNS name is involved, so nothing can be re-pointed),
//!   `localhost`, or a name in `ALLOWED_HOSTS` (any port, or the one the entry gives);
//! - `Origin`, when the request has one, must be the origin `Host` names (the page is
//!   bkvy's own) or one in `ALLOWED_ORIGINS`. `Origin: null` (a sandboxed page, a file)
//!   passes only if `ALLOWED_ORIGINS` lists `null`.
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

/// Host names the `Host` header of a protected request may carry beside IP addresses and
/// `localhost` (`ALLOWED_HOSTS`): `name` (any port), `name:port`, or `*` (any host).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostList(Vec<String>);

impl HostList {
    /// Parses `bkvy.internal, gateway.example:8080`; an entry must be a host name or
    /// `name:port` (no scheme, path or spaces).
    pub fn parse(s: &str) -> Result<Self, String> {
        s.split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| {
                let ok = e == "*"
                    || (split_host(e).is_some()
                        && e.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b)));
                if ok {
                    Ok(e.to_ascii_lowercase())
                } else {
                    Err(format!("\"{e}\" is not a host name or host:port"))
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// Whether the `Host` value `host` (`name` or `name:port`) is listed.
    fn allows(&self, host: &str) -> bool {
        let Some((name, _)) = split_host(host) else {
            return false;
        };
        self.0.iter().any(|e| {
            e == "*"
                || e.eq_ignore_ascii_case(host)
                || (!e.contains(':') && e.eq_ignore_ascii_case(name))
        })
    }
}

/// Origins (`scheme://host[:port]`) allowed to send protected requests beside bkvy's own
/// (`ALLOWED_ORIGINS`); `null` admits `Origin: null`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginList(Vec<String>);

impl OriginList {
    /// Parses `https://ops.example, http://localhost:3000`; an entry must be an origin:
    /// `http://` or `https://`, a host, an optional port, and nothing after it.
    pub fn parse(s: &str) -> Result<Self, String> {
        s.split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| {
                let e = e.to_ascii_lowercase();
                if e == "null" || origin_authority(&e).is_some() {
                    Ok(e)
                } else {
                    Err(format!(
                        "\"{e}\" is not an origin (scheme://host[:port], or null)"
                    ))
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    fn contains(&self, origin: &str) -> bool {
        self.0.iter().any(|e| e.eq_ignore_ascii_case(origin))
    }
}

/// `name` and the optional port of a `Host` value (`name`, `name:port`, `[v6]`,
/// `[v6]:port`); `None` when it is not that shape.
fn split_host(host: &str) -> Option<(&str, Option<&str>)> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (v6, port)
    } else {
        match host.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        }
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    (!name.is_empty() && port_ok).then_some((name, port))
}

/// The authority (`host[:port]`) of an origin `http(s)://host[:port]`.
fn origin_authority(origin: &str) -> Option<&str> {
    let rest = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))?;
    (split_host(rest).is_some() && !rest.contains(['/', '?', '#', '@'])).then_some(rest)
}

/// The allow-list and the proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPolicy {
    /// Who may reach the protected endpoints.
    pub allowed: IpList,
    /// Reverse proxies in front of bkvy.
    pub trusted_proxies: IpList,
    /// Host names (beside IP addresses and `localhost`) a protected request's `Host` may
    /// name (`ALLOWED_HOSTS`, none by default).
    pub allowed_hosts: HostList,
    /// Origins (beside bkvy's own) a protected request's `Origin` may name
    /// (`ALLOWED_ORIGINS`, none by default).
    pub allowed_origins: OriginList,
    /// `ADMIN_TOKEN`: when set, the admin endpoints require it as `Authorization: Bearer`
    /// (besides an allowed address), and the dashboard and the status endpoints accept it
    /// instead of an allowed address.
    pub admin_token: Option<crate::config::Secret>,
    /// Whether the status endpoints that reveal configuration or spend are open to every
    /// caller (`STATUS_ACCESS=open`) instead of following the dashboard's rule
    /// (`protected`, the default).
    pub status_open: bool,
}

impl Default for AccessPolicy {
    /// Loopback only ([`AccessPolicy::DEFAULT_ALLOWED`]), no trusted proxy.
    fn default() -> Self {
        Self {
            allowed: IpList::parse(Self::DEFAULT_ALLOWED).unwrap_or_default(),
            trusted_proxies: IpList::default(),
            allowed_hosts: HostList::default(),
            allowed_origins: OriginList::default(),
            admin_token: None,
            status_open: false,
        }
    }
}

impl AccessPolicy {
    /// Whether the request carries the admin token (`false` when none is set). The
    /// token's and the presented value's SHA-256 are compared in constant time.
    pub fn has_admin_token(&self, req: &HttpRequest) -> bool {
        use subtle::ConstantTimeEq;
        let Some(token) = &self.admin_token else {
            return false;
        };
        let presented = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim());
        presented.is_some_and(|p| {
            let (a, b) = (
                crate::config::clients::sha256(p),
                crate::config::clients::sha256(token.expose()),
            );
            bool::from(a.ct_eq(&b))
        })
    }

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

impl AccessPolicy {
    /// Whether the request's `Host` and `Origin` show it comes from bkvy's own pages or a
    /// client that is not a browser on another site (see the module's header); the
    /// refusal names the header.
    pub fn check_site(&self, req: &HttpRequest) -> Result<(), String> {
        let host = match req.headers().get(actix_web::http::header::HOST) {
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| "the Host header is not visible ASCII".to_owned())?
                    .trim(),
            ),
            None => req.uri().authority().map(|a| a.as_str()),
        };
        if let Some(host) = host {
            if !self.host_allowed(host) {
                return Err(format!(
                    "Host {host:?} is not an allowed host name (an IP address, localhost, or \
                     one listed in ALLOWED_HOSTS)"
                ));
            }
        }
        let mut origins = req.headers().get_all(actix_web::http::header::ORIGIN);
        let Some(origin) = origins.next() else {
            return Ok(());
        };
        let origin = origin
            .to_str()
            .map_err(|_| "the Origin header is not visible ASCII".to_owned())?
            .trim();
        let same = origin_authority(&origin.to_ascii_lowercase())
            .zip(host)
            .is_some_and(|(authority, host)| authority.eq_ignore_ascii_case(host));
        if origins.next().is_none() && (same || self.allowed_origins.contains(origin)) {
            return Ok(());
        }
        Err(format!(
            "Origin {origin:?} is neither this server's own nor listed in ALLOWED_ORIGINS"
        ))
    }

    fn host_allowed(&self, host: &str) -> bool {
        let Some((name, _)) = split_host(host) else {
            return false;
        };
        name.parse::<IpAddr>().is_ok()
            || name.eq_ignore_ascii_case("localhost")
            || self.allowed_hosts.allows(host)
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
            ..AccessPolicy::default()
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
            ..AccessPolicy::default()
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

    fn site(headers: &[(&str, &str)]) -> HttpRequest {
        let mut req = actix_web::test::TestRequest::default();
        for (k, v) in headers {
            req = req.append_header((*k, *v));
        }
        req.to_http_request()
    }

    #[test]
    fn hosts_that_cannot_be_rebound_pass_and_names_need_listing() {
        let policy = AccessPolicy::default();
        for host in [
            "127.0.0.1:10006",
            "127.0.0.1",
            "[::1]:8080",
            "[::1]",
            "localhost:3000",
            "LOCALHOST",
            "10.1.2.3:80",
        ] {
            assert_eq!(
                policy.check_site(&site(&[("host", host)])),
                Ok(()),
                "{host}"
            );
        }
        for host in [
            "rebind.evil.example",
            "rebind.evil.example:10006",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "",
            "[::1",
            "127.0.0.1:x",
        ] {
            let e = policy.check_site(&site(&[("host", host)])).unwrap_err();
            assert!(e.contains("Host"), "{host}: {e}");
        }
        let listed = AccessPolicy {
            allowed_hosts: HostList::parse("gw.example, other.example:8443").unwrap(),
            ..AccessPolicy::default()
        };
        let ok = |h: &str| listed.check_site(&site(&[("host", h)])).is_ok();
        assert!(ok("gw.example") && ok("GW.example:10006") && ok("other.example:8443"));
        assert!(!ok("other.example:8444") && !ok("other.example") && !ok("x.gw.example"));
        let any = AccessPolicy {
            allowed_hosts: HostList::parse("*").unwrap(),
            ..AccessPolicy::default()
        };
        assert!(any
            .check_site(&site(&[("host", "anything.example")]))
            .is_ok());
        assert!(HostList::parse("http://gw.example").is_err());
        assert!(HostList::parse("gw.example/x").is_err());
        assert!(HostList::parse("gw example").is_err());
    }

    #[test]
    fn an_origin_must_be_the_hosts_own_or_listed() {
        let policy = AccessPolicy::default();
        let check = |p: &AccessPolicy, origin: &str| {
            p.check_site(&site(&[("host", "127.0.0.1:10006"), ("origin", origin)]))
        };
        assert_eq!(check(&policy, "http://127.0.0.1:10006"), Ok(()));
        assert_eq!(check(&policy, "HTTP://127.0.0.1:10006"), Ok(()));
        for origin in [
            "https://evil.example",
            "http://127.0.0.1:10007",
            "http://localhost:10006",
            "null",
            "",
            "http://127.0.0.1:10006/x",
        ] {
            let e = check(&policy, origin).unwrap_err();
            assert!(e.contains("Origin"), "{origin}: {e}");
        }
        assert!(
            policy
                .check_site(&site(&[("host", "127.0.0.1:10006")]))
                .is_ok(),
            "no Origin (not a browser, or a same-origin GET) passes"
        );
        let two = site(&[
            ("host", "127.0.0.1:10006"),
            ("origin", "http://127.0.0.1:10006"),
            ("origin", "https://evil.example"),
        ]);
        assert!(policy.check_site(&two).is_err(), "two Origin lines");
        let listed = AccessPolicy {
            allowed_origins: OriginList::parse("https://ops.example, null").unwrap(),
            ..AccessPolicy::default()
        };
        assert_eq!(check(&listed, "https://ops.example"), Ok(()));
        assert_eq!(check(&listed, "null"), Ok(()));
        assert!(check(&listed, "http://ops.example").is_err());
        assert!(OriginList::parse("ops.example").is_err());
        assert!(OriginList::parse("https://ops.example/path").is_err());
    }
}
