//! The HTTP clients of one worker, one per distinct provider connect timeout.
//!
//! awc sets the connect timeout on the connector, i.e. per client, and asks for one client
//! per thread; so each worker builds one client for every connect timeout the config uses
//! and picks the provider's at call time. A timeout that appears only after a reload uses
//! the client with the longest timeout.

use std::time::Duration;

use crate::config::Config;

/// Connections kept per client.
const POOL_LIMIT: usize = 4096;

/// A worker's clients.
pub struct Clients {
    /// The client with the longest connect timeout (used for timeouts not listed).
    longest: awc::Client,
    by_connect_timeout: Vec<(Duration, awc::Client)>,
}

fn client(connect_timeout: Duration) -> awc::Client {
    awc::Client::builder()
        .connector(
            awc::Connector::new()
                // HTTP/1.1 only: an HTTPS upstream cannot negotiate HTTP/2 through ALPN, so
                // h2 0.3's client code (RUSTSEC-2026-0258, no fixed 0.3 release) never runs.
                // See docs/SECURITY.md.
                .max_http_version(awc::http::Version::HTTP_11)
                .timeout(connect_timeout)
                .limit(POOL_LIMIT),
        )
        .disable_redirects()
        // Every call has its own deadline around the whole exchange (head and body, see
        // `providers::call`); awc's own timers would only add two more per request.
        .disable_timeout()
        .finish()
}

impl Clients {
    /// One client per distinct `connect_timeout_seconds` of `config`.
    pub fn for_config(config: &Config) -> Self {
        let mut timeouts: Vec<Duration> =
            config.providers.iter().map(|p| p.connect_timeout).collect();
        timeouts.sort_unstable();
        timeouts.dedup();
        let longest = timeouts.last().copied().unwrap_or(Duration::from_secs(10));
        Self {
            longest: client(longest),
            by_connect_timeout: timeouts.into_iter().map(|t| (t, client(t))).collect(),
        }
    }

    /// The client for a provider's connect timeout.
    pub fn get(&self, connect_timeout: Duration) -> &awc::Client {
        self.by_connect_timeout
            .iter()
            .find(|(t, _)| *t == connect_timeout)
            .map_or(&self.longest, |(_, c)| c)
    }
}
