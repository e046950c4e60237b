//! Who is the client: the socket peer, or, when the peer is a trusted proxy,
//! the right-most untrusted hop of `X-Forwarded-For`.
//!
//! The left-most entry is whatever the client chose to write, so it is never
//! believed on its own; we walk from the right (the entry our own proxy
//! appended) and stop at the first address that is not one of our proxies.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use http::HeaderMap;

use crate::limits::canonical;
use ipnet::IpNet;

#[derive(Debug, Clone, Default)]
pub struct ClientIpResolver {
    trusted: Vec<IpNet>,
}

impl ClientIpResolver {
    pub fn new(trusted: Vec<IpNet>) -> Self {
        Self { trusted }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// Whether the connection's peer is one of `TRUSTED_PROXIES`.
    pub fn is_trusted_peer(&self, peer: IpAddr) -> bool {
        !self.trusted.is_empty() && self.is_trusted(canonical(peer))
    }

    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if self.trusted.is_empty() || !self.is_trusted(peer) {
            return peer;
        }
        let mut client = peer;
        // Every X-Forwarded-For header, in order, forms one list.
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        for hop in hops.iter().rev() {
            match parse_hop(hop) {
                Some(ip) => {
                    client = ip;
                    if !self.is_trusted(ip) {
                        break;
                    }
                }
                // A malformed entry written behind our trusted proxy: keep
                // the last address we could establish rather than guess.
                None => break,
            }
        }
        client
    }
}

/// An X-Forwarded-For entry: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:443`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sock) = hop.parse::<SocketAddr>() {
        return Some(canonical(sock.ip()));
    }
    hop.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse::<Ipv6Addr>().ok())
        .map(|v6| canonical(IpAddr::V6(v6)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver(cidrs: &[&str]) -> ClientIpResolver {
        ClientIpResolver::new(cidrs.iter().map(|c| c.parse().unwrap()).collect())
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_ignored_from_untrusted_peers() {
        let r = resolver(&["10.0.0.0/8"]);
        assert_eq!(
            r.resolve(ip("203.0.113.9"), &xff(&["1.1.1.1"])),
            ip("203.0.113.9")
        );
        assert_eq!(
            resolver(&[]).resolve(ip("10.0.0.1"), &xff(&["1.1.1.1"])),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let r = resolver(&["10.0.0.0/8"]);
        // The client forged "6.6.6.6"; our proxy appended the real address.
        let h = xff(&["6.6.6.6, 198.51.100.7, 10.0.0.2"]);
        assert_eq!(r.resolve(ip("10.0.0.1"), &h), ip("198.51.100.7"));
        let h = xff(&["6.6.6.6", "198.51.100.7"]);
        assert_eq!(r.resolve(ip("10.0.0.1"), &h), ip("198.51.100.7"));
    }

    #[test]
    fn all_trusted_hops_leave_the_left_most() {
        let r = resolver(&["10.0.0.0/8"]);
        assert_eq!(
            r.resolve(ip("10.0.0.1"), &xff(&["10.1.1.1, 10.2.2.2"])),
            ip("10.1.1.1")
        );
        assert_eq!(r.resolve(ip("10.0.0.1"), &HeaderMap::new()), ip("10.0.0.1"));
    }

    #[test]
    fn garbage_behind_a_trusted_hop_stops_the_walk() {
        let r = resolver(&["10.0.0.0/8"]);
        assert_eq!(
            r.resolve(ip("10.0.0.1"), &xff(&["nonsense, 10.0.0.3"])),
            ip("10.0.0.3")
        );
        assert_eq!(
            r.resolve(ip("10.0.0.1"), &xff(&["1.2.3.4, unknown"])),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn ports_and_brackets_are_understood() {
        let r = resolver(&["10.0.0.0/8"]);
        assert_eq!(
            r.resolve(ip("10.0.0.1"), &xff(&["198.51.100.7:4711"])),
            ip("198.51.100.7")
        );
        assert_eq!(
            r.resolve(ip("10.0.0.1"), &xff(&["[2001:db8::1]:443"])),
            ip("2001:db8::1")
        );
        assert_eq!(
            r.resolve(ip("10.0.0.1"), &xff(&["[2001:db8::1]"])),
            ip("2001:db8::1")
        );
    }

    #[test]
    fn mapped_ipv4_peers_are_plain_ipv4() {
        let r = resolver(&["127.0.0.0/8"]);
        assert_eq!(
            r.resolve(ip("::ffff:127.0.0.1"), &xff(&["198.51.100.7"])),
            ip("198.51.100.7")
        );
    }
}
