//! Who the client is, without trusting liars: the socket peer, unless it is a proxy the service
//! trusts, whose forwarding headers then say who came before it.
//!
//! A proxy appends the address it received the request from to `X-Forwarded-For` (or adds a
//! `Forwarded` element, RFC 7239), after whatever the client sent. So the list is read from the
//! right: the last entry was written by the socket peer; if that entry names a trusted proxy too,
//! the entry before it was written by that proxy, and so on. The first entry naming an address
//! that is not trusted was written by a trusted proxy about the host that connected to it: that
//! host is the client. Nothing left of it is read, since the client may have written it. Where
//! an entry cannot be read (malformed, `unknown`, obfuscated), the walk stops and the client is
//! the last address read, the socket peer when there is none. `url.scheme` and `server.address`
//! come from the same hop (`Forwarded`'s `proto` and `host`, or the entry of
//! `X-Forwarded-Proto`/`-Host` at the same position from the right). The HTTP semantic
//! conventions (v1.44.0, `client.address`, `url.scheme` and "Setting `server.address` and
//! `server.port` attributes") name these headers as the sources; which family a service's
//! proxies write is its own choice ([`ForwardedHeaders`]), since a proxy passes the other family
//! through from the client untouched.
//!
//! With no trusted proxy configured, or a socket peer that is not one, no forwarding header is
//! read at all.

use std::{
    fmt,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    str,
};

use http::{HeaderMap, HeaderName};

use crate::config::Warnings;

/// `OTEL_MONITOR_TRUSTED_PROXIES`: the proxies whose forwarding headers are believed, as
/// comma-separated addresses and CIDR ranges.
pub(crate) const OTEL_MONITOR_TRUSTED_PROXIES: &str = "OTEL_MONITOR_TRUSTED_PROXIES";
/// `OTEL_MONITOR_FORWARDED_HEADERS`: which headers they write, `x-forwarded` or `forwarded`.
pub(crate) const OTEL_MONITOR_FORWARDED_HEADERS: &str = "OTEL_MONITOR_FORWARDED_HEADERS";

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The most hops read back from the socket peer: past it, the client is the last one read. Real
/// chains are a few proxies long; a client inside a trusted range could otherwise make every
/// request walk a header as long as the server accepts.
const MAX_HOPS: usize = 32;

/// Which forwarding headers the trusted proxies write, and so which ones are read.
///
/// One family only: a proxy that writes `X-Forwarded-For` passes a `Forwarded` header the
/// client sent through untouched (and the other way round), so reading both would believe the
/// client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardedHeaders {
    /// `X-Forwarded-For`, `X-Forwarded-Proto` and `X-Forwarded-Host`: what most proxies and
    /// load balancers write (nginx, HAProxy's `option forwardfor`, Envoy, Traefik, AWS ALB,
    /// Google Cloud load balancers). The default.
    #[default]
    XForwarded,
    /// `Forwarded` (RFC 7239), its `for`, `proto` and `host` parameters.
    Forwarded,
}

impl ForwardedHeaders {
    const ACCEPTED: &'static str = "x-forwarded, forwarded";

    fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "x-forwarded" => Some(Self::XForwarded),
            "forwarded" => Some(Self::Forwarded),
            _ => None,
        }
    }
}

/// A client's address, and its port when known.
pub(crate) type ClientAddress = (IpAddr, Option<u16>);

/// The proxies whose forwarding headers are believed, and which headers they write.
#[derive(Debug, Clone, Default)]
pub(crate) struct TrustedProxies {
    networks: Box<[Network]>,
    headers: ForwardedHeaders,
}

/// Who sent a request and what it asked for, as far as the socket and the trusted proxies tell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Origin<'h> {
    /// The socket peer: `network.peer.address` and `network.peer.port`.
    pub(crate) peer: Option<SocketAddr>,
    /// `client.address` and `client.port`: the peer, unless trusted proxies say otherwise.
    pub(crate) client: Option<ClientAddress>,
    /// `url.scheme`, when a trusted proxy says.
    pub(crate) scheme: Option<&'static str>,
    /// The host the client addressed (`host[:port]`), when a trusted proxy says; not yet checked.
    pub(crate) host: Option<&'h str>,
}

impl TrustedProxies {
    /// The trusted proxies the builder gave (`configured`), else those of
    /// `OTEL_MONITOR_TRUSTED_PROXIES`, read through `env`; entries that are neither an address
    /// nor a CIDR range are ignored with a warning. Likewise the headers.
    pub(crate) fn resolve(
        configured: Option<&[String]>,
        headers: Option<ForwardedHeaders>,
        env: impl Fn(&str) -> Option<String>,
        warnings: &mut Warnings,
    ) -> Self {
        let mut networks = Vec::new();
        let mut add = |entry: &str, source: &str| match Network::parse(entry) {
            Some(network) if !networks.contains(&network) => networks.push(network),
            Some(_) => {}
            None => warnings.push(format!(
                "{source}: {entry:?} is neither an IP address nor a CIDR range: ignored"
            )),
        };
        match configured {
            Some(entries) => entries
                .iter()
                .for_each(|entry| add(entry.trim(), "trusted_proxies")),
            None => {
                let value = env(OTEL_MONITOR_TRUSTED_PROXIES).unwrap_or_default();
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|entry| !entry.is_empty())
                    .for_each(|entry| add(entry, OTEL_MONITOR_TRUSTED_PROXIES));
            }
        }
        let headers = headers.unwrap_or_else(|| {
            let value = env(OTEL_MONITOR_FORWARDED_HEADERS).unwrap_or_default();
            if value.trim().is_empty() {
                return ForwardedHeaders::default();
            }
            ForwardedHeaders::parse(&value).unwrap_or_else(|| {
                warnings.push(format!(
                    "{OTEL_MONITOR_FORWARDED_HEADERS}={value:?} is not one of {}: read as x-forwarded",
                    ForwardedHeaders::ACCEPTED
                ));
                ForwardedHeaders::default()
            })
        });
        Self {
            networks: networks.into(),
            headers,
        }
    }

    fn trusts(&self, address: IpAddr) -> bool {
        self.networks
            .iter()
            .any(|network| network.contains(address))
    }

    /// The origin of a request from `peer` with `headers`: what the trusted proxies say when
    /// `peer` is one, the peer alone otherwise. With no trusted proxy, that is all it does: the
    /// headers are not looked at.
    pub(crate) fn origin<'h>(
        &self,
        peer: Option<SocketAddr>,
        headers: &'h HeaderMap,
    ) -> Origin<'h> {
        let mut origin = Origin {
            peer,
            client: peer.map(|peer| (peer.ip(), Some(peer.port()))),
            scheme: None,
            host: None,
        };
        let Some(peer) = peer else {
            return origin;
        };
        if !self.trusts(peer.ip()) {
            return origin;
        }
        match self.headers {
            ForwardedHeaders::XForwarded => {
                let hops = list_from_right(headers, &X_FORWARDED_FOR).map(|entry| {
                    Some(Hop {
                        node: Node::Address(x_forwarded_for_node(entry?)?),
                        ..Hop::default()
                    })
                });
                let (client, last) = self.walk(hops);
                // The entry of the same hop, or the leftmost when a proxy replaced the header
                // rather than appending to it.
                let position = last.map_or(0, |(position, _)| position);
                let entry = |name: &HeaderName| {
                    list_from_right(headers, name)
                        .take(position + 1)
                        .last()
                        .flatten()
                        .and_then(|entry| str::from_utf8(entry).ok())
                        .map(|entry| entry.trim_matches(OWS))
                };
                origin.client = client.or(origin.client);
                origin.scheme = entry(&X_FORWARDED_PROTO).and_then(scheme);
                origin.host = entry(&X_FORWARDED_HOST).filter(|host| !host.is_empty());
            }
            ForwardedHeaders::Forwarded => {
                let hops = list_from_right(headers, &http::header::FORWARDED)
                    .map(|element| forwarded_element(element?));
                let (client, last) = self.walk(hops);
                origin.client = client.or(origin.client);
                if let Some((_, hop)) = last {
                    origin.scheme = hop.scheme;
                    origin.host = hop.host;
                }
            }
        }
        origin
    }

    /// Walks `hops` from the right (from the socket peer, which is trusted): the client (the
    /// first address not trusted, or the last address read), and the last hop read with its
    /// position. A hop that cannot be read (`None`) ends the walk before it.
    fn walk<'h>(
        &self,
        hops: impl Iterator<Item = Option<Hop<'h>>>,
    ) -> (Option<ClientAddress>, Option<(usize, Hop<'h>)>) {
        let mut client = None;
        let mut last = None;
        for (position, hop) in hops.enumerate().take(MAX_HOPS) {
            let Some(hop) = hop else {
                break;
            };
            last = Some((position, hop));
            let Node::Address(address) = hop.node else {
                break;
            };
            client = Some(address);
            if !self.trusts(address.0) {
                break;
            }
        }
        (client, last)
    }
}

/// An IPv4 or IPv6 network: an address with a prefix length (a single address has the longest).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Network {
    V4 { address: u32, mask: u32 },
    V6 { address: u128, mask: u128 },
}

impl Network {
    /// `address` or `address/prefix`, IPv4 or IPv6; host bits under the prefix are ignored. An
    /// IPv4-mapped IPv6 entry (`::ffff:10.0.0.1`) is the IPv4 one, as peers are compared.
    fn parse(entry: &str) -> Option<Self> {
        let (address, prefix) = match entry.split_once('/') {
            Some((address, prefix)) => {
                if prefix.is_empty() || !prefix.bytes().all(|byte| byte.is_ascii_digit()) {
                    return None;
                }
                (address, Some(prefix.parse::<u32>().ok()?))
            }
            None => (entry, None),
        };
        let address: IpAddr = address.parse().ok()?;
        let network = match address {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) if prefix.is_none_or(|prefix| prefix >= 96) => {
                    let prefix = prefix.map_or(32, |prefix| prefix - 96);
                    Self::v4(u32::from(v4), prefix)?
                }
                _ => Self::v6(u128::from(v6), prefix.unwrap_or(128))?,
            },
            IpAddr::V4(v4) => Self::v4(u32::from(v4), prefix.unwrap_or(32))?,
        };
        Some(network)
    }

    fn v4(address: u32, prefix: u32) -> Option<Self> {
        let mask = u32::MAX
            .checked_shl(32u32.checked_sub(prefix)?)
            .unwrap_or(0);
        Some(Self::V4 {
            address: address & mask,
            mask,
        })
    }

    fn v6(address: u128, prefix: u32) -> Option<Self> {
        let mask = u128::MAX
            .checked_shl(128u32.checked_sub(prefix)?)
            .unwrap_or(0);
        Some(Self::V6 {
            address: address & mask,
            mask,
        })
    }

    /// Whether `address`, in canonical form (an IPv4-mapped IPv6 address as IPv4), is inside.
    fn contains(self, address: IpAddr) -> bool {
        match (self, address) {
            (
                Self::V4 {
                    address: network,
                    mask,
                },
                IpAddr::V4(address),
            ) => u32::from(address) & mask == network,
            (
                Self::V6 {
                    address: network,
                    mask,
                },
                IpAddr::V6(address),
            ) => u128::from(address) & mask == network,
            _ => false,
        }
    }
}

impl fmt::Debug for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::V4 { address, mask } => write!(
                f,
                "{}/{}",
                std::net::Ipv4Addr::from(address),
                mask.count_ones()
            ),
            Self::V6 { address, mask } => {
                write!(f, "{}/{}", Ipv6Addr::from(address), mask.count_ones())
            }
        }
    }
}

/// One proxy's entry: whom it received the request from, and how, when it says.
#[derive(Debug, Clone, Copy, Default)]
struct Hop<'h> {
    node: Node,
    scheme: Option<&'static str>,
    host: Option<&'h str>,
}

/// Whom a proxy received the request from.
#[derive(Debug, Clone, Copy, Default)]
enum Node {
    Address(ClientAddress),
    /// `unknown`, an obfuscated identifier, or not said.
    #[default]
    Hidden,
}

/// Optional whitespace (RFC 9110, 5.6.3).
const OWS: [char; 2] = [' ', '\t'];

/// The entries of the comma-separated list `name` holds over all its lines, from the last; empty
/// entries are skipped (RFC 9110, 5.6.1), and an entry holding a quote is kept whole across
/// commas. `None` for an entry that cannot be split from the right: one with a backslash, whose
/// quoting only a reading from the left can tell. Only what is consumed is scanned.
fn list_from_right<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
) -> impl Iterator<Item = Option<&'h [u8]>> + use<'h> {
    headers
        .get_all(name)
        .iter()
        .rev()
        .flat_map(|line| EntriesFromRight {
            rest: Some(line.as_bytes()),
        })
        .filter(|entry| entry.is_none_or(|entry| !entry.trim_ascii().is_empty()))
}

/// The comma-separated entries of one header line, from the last.
struct EntriesFromRight<'h> {
    rest: Option<&'h [u8]>,
}

impl<'h> Iterator for EntriesFromRight<'h> {
    type Item = Option<&'h [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest?;
        let mut quoted = false;
        for (index, &byte) in rest.iter().enumerate().rev() {
            match byte {
                b'\\' => {
                    self.rest = None;
                    return Some(None);
                }
                b'"' => quoted = !quoted,
                b',' if !quoted => {
                    self.rest = Some(&rest[..index]);
                    return Some(Some(&rest[index + 1..]));
                }
                _ => {}
            }
        }
        self.rest = None;
        Some(Some(rest))
    }
}

/// An `X-Forwarded-For` entry: an IP address, with a port where proxies add one
/// (`192.0.2.1:4711`, `[2001:db8::1]:4711`), or a bracketed IPv6 address alone.
fn x_forwarded_for_node(entry: &[u8]) -> Option<ClientAddress> {
    let entry = str::from_utf8(entry).ok()?.trim_matches(OWS);
    if let Ok(address) = entry.parse::<IpAddr>() {
        return Some((address.to_canonical(), None));
    }
    if let Ok(socket) = entry.parse::<SocketAddr>() {
        return Some((socket.ip().to_canonical(), Some(socket.port())));
    }
    let address: Ipv6Addr = entry.strip_prefix('[')?.strip_suffix(']')?.parse().ok()?;
    Some((IpAddr::V6(address).to_canonical(), None))
}

/// `http` or `https`, in any case (URI schemes are case-insensitive); another scheme is not one
/// the HTTP conventions record, and is ignored.
fn scheme(value: &str) -> Option<&'static str> {
    if value.eq_ignore_ascii_case("https") {
        Some("https")
    } else if value.eq_ignore_ascii_case("http") {
        Some("http")
    } else {
        None
    }
}

/// A `forwarded-element` of RFC 7239 (4): `;`-separated `name=value` pairs, each name at most
/// once (5), a value a token or a quoted string. `None` when malformed. Extension parameters are
/// checked for syntax and otherwise ignored.
fn forwarded_element(element: &[u8]) -> Option<Hop<'_>> {
    let element = str::from_utf8(element).ok()?;
    let mut hop = Hop::default();
    let mut seen = [false; 4];
    for pair in element.split(';') {
        let pair = pair.trim_matches(OWS);
        if pair.is_empty() {
            continue;
        }
        let (name, value) = pair.split_once('=')?;
        if !is_token(name) {
            return None;
        }
        let value = token_or_quoted(value)?;
        let parameter = ["for", "by", "host", "proto"]
            .iter()
            .position(|known| name.eq_ignore_ascii_case(known));
        if let Some(parameter) = parameter {
            if seen[parameter] {
                return None;
            }
            seen[parameter] = true;
        }
        match parameter {
            Some(0) => hop.node = forwarded_node(value)?,
            Some(1) => {
                forwarded_node(value)?;
            }
            Some(2) => hop.host = Some(value),
            Some(3) => hop.scheme = scheme(value),
            _ => {}
        }
    }
    Some(hop)
}

/// A `node` of RFC 7239 (6): `192.0.2.43`, `[2001:db8:cafe::17]`, `unknown` or an obfuscated
/// `_name`, with an optional port, itself possibly obfuscated (`_port`, read as no port).
fn forwarded_node(value: &str) -> Option<Node> {
    let (address, port) = match value.strip_prefix('[') {
        Some(bracketed) => {
            let (address, rest) = bracketed.split_once(']')?;
            let port = match rest {
                "" => None,
                rest => Some(rest.strip_prefix(':')?),
            };
            (Some(IpAddr::V6(address.parse().ok()?)), port)
        }
        None => {
            let (name, port) = match value.split_once(':') {
                Some((name, port)) => (name, Some(port)),
                None => (value, None),
            };
            let address = if name.eq_ignore_ascii_case("unknown") || is_obfuscated(name) {
                None
            } else {
                Some(IpAddr::V4(name.parse().ok()?))
            };
            (address, port)
        }
    };
    let port = match port {
        None => None,
        Some(port) if is_obfuscated(port) => None,
        Some(port) if (1..=5).contains(&port.len()) && port.bytes().all(|b| b.is_ascii_digit()) => {
            Some(port.parse().ok()?)
        }
        Some(_) => return None,
    };
    Some(match address {
        Some(address) => Node::Address((address.to_canonical(), port)),
        None => Node::Hidden,
    })
}

/// `obfnode` and `obfport` of RFC 7239 (6.3): `_` and then letters, digits, `.`, `_`, `-`.
fn is_obfuscated(value: &str) -> bool {
    value.len() > 1
        && value.starts_with('_')
        && value
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
}

/// A `token` (RFC 9110, 5.6.2).
fn is_token(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte))
}

/// A token, or the content of a quoted string without quoted pairs (RFC 9110, 5.6.4), which no
/// value read here needs. (Pairs are split at every `;`: a quoted value holding one is read as
/// malformed, as no value read here holds one.)
fn token_or_quoted(value: &str) -> Option<&str> {
    match value.strip_prefix('"') {
        Some(quoted) => {
            let content = quoted.strip_suffix('"')?;
            let plain = content.bytes().all(|byte| {
                byte == b'\t' || (0x20..0x7f).contains(&byte) && !matches!(byte, b'"' | b'\\')
            });
            plain.then_some(content)
        }
        None => is_token(value).then_some(value),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use http::HeaderValue;
    use proptest::{collection::vec, prelude::*, sample::select};

    use super::*;

    fn trusting(entries: &[&str], headers: ForwardedHeaders) -> TrustedProxies {
        let entries: Vec<String> = entries.iter().map(|entry| entry.to_string()).collect();
        let mut warnings = Warnings::default();
        let proxies =
            TrustedProxies::resolve(Some(&entries), Some(headers), |_| None, &mut warnings);
        assert_eq!(warnings.0, Vec::<String>::new());
        proxies
    }

    /// The headers of `lines`, kept for the rest of the test process, as origins borrow them.
    fn headers(lines: &[(&str, &str)]) -> &'static HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in lines {
            let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
            headers.append(name, HeaderValue::from_str(value).unwrap());
        }
        Box::leak(Box::new(headers))
    }

    fn socket(address: &str) -> Option<SocketAddr> {
        Some(address.parse().unwrap())
    }

    fn client(address: &str, port: Option<u16>) -> Option<ClientAddress> {
        Some((address.parse().unwrap(), port))
    }

    const PEER: &str = "10.0.0.1:5000";

    #[test]
    fn addresses_and_cidr_ranges_of_both_families_are_trusted_and_nothing_else() {
        let proxies = trusting(
            &[
                "10.0.0.0/8",
                "192.0.2.7",
                "2001:db8::/32",
                "::1",
                "::ffff:172.16.0.0/108",
                "0.0.0.0/0 ",
            ],
            ForwardedHeaders::XForwarded,
        );
        for trusted in [
            "10.255.0.1",
            "192.0.2.7",
            "2001:db8:1::5",
            "::1",
            "172.16.3.4",
            "8.8.8.8",
        ] {
            assert!(proxies.trusts(trusted.parse().unwrap()), "{trusted}");
        }
        // 0.0.0.0/0 is every IPv4 address and no IPv6 one.
        for untrusted in ["2001:db9::1", "::2", "fe80::1"] {
            assert!(!proxies.trusts(untrusted.parse().unwrap()), "{untrusted}");
        }
        let proxies = trusting(&["10.0.0.1/8"], ForwardedHeaders::XForwarded);
        assert!(
            proxies.trusts("10.9.9.9".parse().unwrap()),
            "host bits are ignored"
        );
        assert!(!proxies.trusts("11.0.0.0".parse().unwrap()));
    }

    #[test]
    fn invalid_entries_are_ignored_with_a_warning_and_the_builder_overrides_the_variable() {
        let env: HashMap<&str, &str> = [
            (
                OTEL_MONITOR_TRUSTED_PROXIES,
                "10.0.0.1, bogus,, 10.0.0.0/33,::1/129, 10.0.0.0/-1,fd00::/8",
            ),
            (OTEL_MONITOR_FORWARDED_HEADERS, "Forwarded"),
        ]
        .into_iter()
        .collect();
        let read = |name: &str| env.get(name).map(|value| value.to_string());
        let mut warnings = Warnings::default();
        let proxies = TrustedProxies::resolve(None, None, read, &mut warnings);
        assert_eq!(warnings.0.len(), 4, "{:?}", warnings.0);
        assert!(warnings.0[0].contains("OTEL_MONITOR_TRUSTED_PROXIES: \"bogus\""));
        assert_eq!(format!("{:?}", proxies.networks), "[10.0.0.1/32, fd00::/8]");
        assert_eq!(proxies.headers, ForwardedHeaders::Forwarded);

        let mut warnings = Warnings::default();
        let configured = ["192.0.2.0/24".to_owned()];
        let proxies = TrustedProxies::resolve(
            Some(&configured),
            Some(ForwardedHeaders::XForwarded),
            read,
            &mut warnings,
        );
        assert_eq!(format!("{:?}", proxies.networks), "[192.0.2.0/24]");
        assert_eq!(proxies.headers, ForwardedHeaders::XForwarded);
        assert!(warnings.0.is_empty());

        let mut warnings = Warnings::default();
        let proxies = TrustedProxies::resolve(
            None,
            None,
            |name| (name == OTEL_MONITOR_FORWARDED_HEADERS).then(|| "rfc7239".to_owned()),
            &mut warnings,
        );
        assert!(proxies.networks.is_empty());
        assert_eq!(proxies.headers, ForwardedHeaders::XForwarded);
        assert_eq!(warnings.0.len(), 1);
    }

    #[test]
    fn without_trusted_proxies_or_from_an_untrusted_peer_every_forwarding_header_is_ignored() {
        let spoofed = headers(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
            ("forwarded", "for=203.0.113.9;proto=https;host=evil.example"),
        ]);
        let peer_only = Origin {
            peer: socket("198.51.100.4:5000"),
            client: client("198.51.100.4", Some(5000)),
            scheme: None,
            host: None,
        };
        for headers in [ForwardedHeaders::XForwarded, ForwardedHeaders::Forwarded] {
            let none = trusting(&[], headers);
            assert_eq!(none.origin(peer_only.peer, spoofed), peer_only);
            let others = trusting(&["10.0.0.0/8"], headers);
            assert_eq!(others.origin(peer_only.peer, spoofed), peer_only);
            // No peer, nobody to trust.
            assert_eq!(others.origin(None, spoofed), Origin::default());
        }
    }

    #[test]
    fn x_forwarded_for_is_walked_from_the_right_to_the_first_untrusted_hop() {
        let proxies = trusting(&["10.0.0.0/8"], ForwardedHeaders::XForwarded);
        let origin = |lines: &[(&str, &str)]| proxies.origin(socket(PEER), headers(lines));
        // The client's own entries (left) are never read past the first untrusted hop.
        let chain = origin(&[(
            "x-forwarded-for",
            "1.1.1.1, 203.0.113.9, 198.51.100.7 , 10.0.0.2",
        )]);
        assert_eq!(chain.client, client("198.51.100.7", None));
        assert_eq!(chain.peer, socket(PEER));
        // Over several lines, the last line last.
        let lines = origin(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "198.51.100.7, 10.0.0.3"),
            ("x-forwarded-for", "10.0.0.2"),
        ]);
        assert_eq!(lines.client, client("198.51.100.7", None));
        // Every hop trusted: the leftmost.
        assert_eq!(
            origin(&[("x-forwarded-for", "10.0.0.9,10.0.0.2")]).client,
            client("10.0.0.9", None)
        );
        // Ports and IPv6, bracketed or not; an IPv4-mapped address is the IPv4 one.
        for (entry, expected) in [
            ("198.51.100.7:4711", client("198.51.100.7", Some(4711))),
            ("[2001:db8::7]:4711", client("2001:db8::7", Some(4711))),
            ("[2001:db8::7]", client("2001:db8::7", None)),
            ("2001:db8::7", client("2001:db8::7", None)),
            ("::ffff:198.51.100.7", client("198.51.100.7", None)),
        ] {
            assert_eq!(
                origin(&[("x-forwarded-for", entry)]).client,
                expected,
                "{entry}"
            );
        }
        // An empty header, or empty entries, say nothing.
        assert_eq!(
            origin(&[("x-forwarded-for", " , ,")]).client,
            client("10.0.0.1", Some(5000))
        );
    }

    #[test]
    fn an_unreadable_entry_ends_the_walk_at_the_last_address_read() {
        let proxies = trusting(&["10.0.0.0/8"], ForwardedHeaders::XForwarded);
        let origin =
            |value: &str| proxies.origin(socket(PEER), headers(&[("x-forwarded-for", value)]));
        for malformed in [
            "unknown",
            "example.com",
            "1.2.3",
            "010.0.0.1",
            "1.2.3.4:99999",
            "[::1",
            "\"1.2.3.4\"",
            "1.2.3.4\\",
        ] {
            assert_eq!(
                origin(malformed).client,
                client("10.0.0.1", Some(5000)),
                "{malformed}"
            );
            let behind_a_proxy = format!("{malformed}, 10.0.0.2");
            assert_eq!(
                origin(&behind_a_proxy).client,
                client("10.0.0.2", None),
                "{malformed}"
            );
            // Left of the client, it is never read.
            let left_of_the_client = format!("{malformed}, 198.51.100.7, 10.0.0.2");
            assert_eq!(
                origin(&left_of_the_client).client,
                client("198.51.100.7", None)
            );
        }
    }

    #[test]
    fn the_walk_stops_after_32_hops() {
        let proxies = trusting(&["10.0.0.0/8"], ForwardedHeaders::XForwarded);
        let chain: Vec<String> = (0..100).rev().map(|n| format!("10.0.0.{n}")).collect();
        let origin = proxies.origin(
            socket(PEER),
            headers(&[("x-forwarded-for", &chain.join(","))]),
        );
        assert_eq!(origin.client, client("10.0.0.31", None));
    }

    #[test]
    fn x_forwarded_proto_and_host_come_from_the_clients_hop_or_the_leftmost() {
        let proxies = trusting(&["10.0.0.0/8"], ForwardedHeaders::XForwarded);
        let origin = |lines: &[(&str, &str)]| proxies.origin(socket(PEER), headers(lines));
        // Appended by each proxy: the entry at the client's position from the right.
        let appended = origin(&[
            ("x-forwarded-for", "203.0.113.9, 198.51.100.7, 10.0.0.2"),
            ("x-forwarded-proto", "http, HTTPS, http"),
            (
                "x-forwarded-host",
                "evil.example, shop.example:8443, internal",
            ),
        ]);
        assert_eq!(appended.scheme, Some("https"));
        assert_eq!(appended.host, Some("shop.example:8443"));
        // Set once by the edge proxy: the only entry.
        let set_once = origin(&[
            ("x-forwarded-for", "198.51.100.7, 10.0.0.2"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "shop.example"),
        ]);
        assert_eq!(
            (set_once.scheme, set_once.host),
            (Some("https"), Some("shop.example"))
        );
        // Without X-Forwarded-For, the socket peer's entry.
        let alone = origin(&[("x-forwarded-proto", "http, https")]);
        assert_eq!(alone.scheme, Some("https"));
        // Other schemes are ignored.
        assert_eq!(origin(&[("x-forwarded-proto", "wss")]).scheme, None);
    }

    #[test]
    fn forwarded_elements_give_the_client_with_its_port_scheme_and_host() {
        let proxies = trusting(
            &["10.0.0.0/8", "2001:db8:ffff::/48"],
            ForwardedHeaders::Forwarded,
        );
        let origin = |value: &str| proxies.origin(socket(PEER), headers(&[("forwarded", value)]));
        let quoted_ipv6 = origin(
            r#"for=192.0.2.60;proto=http, For="[2001:db8:cafe::17]:4711";Proto=HTTPS;host="shop.example:8443";by=10.0.0.2, for="[2001:db8:ffff::1]";proto=http"#,
        );
        assert_eq!(quoted_ipv6.client, client("2001:db8:cafe::17", Some(4711)));
        assert_eq!(quoted_ipv6.scheme, Some("https"));
        assert_eq!(quoted_ipv6.host, Some("shop.example:8443"));
        assert_eq!(
            origin("for=192.0.2.60:443").client,
            client("10.0.0.1", Some(5000)),
            "a colon must be quoted"
        );
        assert_eq!(
            origin("for=\"192.0.2.60:443\"").client,
            client("192.0.2.60", Some(443))
        );
        assert_eq!(
            origin("for=\"192.0.2.60:_abc\"").client,
            client("192.0.2.60", None)
        );
        // `unknown` and obfuscated nodes end the walk; their element's scheme still counts.
        let unknown = origin("for=192.0.2.60, for=unknown;proto=https, for=10.0.0.2");
        assert_eq!(
            (unknown.client, unknown.scheme),
            (client("10.0.0.2", None), Some("https"))
        );
        assert_eq!(
            origin("for=_hidden, for=10.0.0.2").client,
            client("10.0.0.2", None)
        );
        // No `for`: the peer; its proto and host still count.
        let no_for = origin("proto=https;host=shop.example");
        assert_eq!(
            (no_for.client, no_for.scheme, no_for.host),
            (
                client("10.0.0.1", Some(5000)),
                Some("https"),
                Some("shop.example")
            )
        );
    }

    #[test]
    fn a_malformed_forwarded_element_is_ignored_and_ends_the_walk() {
        let proxies = trusting(&["10.0.0.0/8"], ForwardedHeaders::Forwarded);
        let origin = |value: &str| proxies.origin(socket(PEER), headers(&[("forwarded", value)]));
        for malformed in [
            "for=[2001:db8::1]",
            "for=2001:db8::1",
            "for=\"[2001:db8::1\"",
            "for=192.0.2.60;for=192.0.2.61",
            "for=\"192.0.2.60",
            "for=192.0.2.60;proto",
            "for=\"a\\\"b\"",
            "for=example.com",
            "for=192.0.2.60:",
            "for=\"192.0.2.60:123456\"",
            "for=192.0.2.60;pro to=http",
            "=192.0.2.60",
        ] {
            let alone = origin(malformed);
            assert_eq!(
                (alone.client, alone.scheme),
                (client("10.0.0.1", Some(5000)), None),
                "{malformed}"
            );
            let behind = origin(&format!("{malformed}, for=10.0.0.2;proto=https"));
            assert_eq!(
                (behind.client, behind.scheme),
                (client("10.0.0.2", None), Some("https")),
                "{malformed}"
            );
        }
        // What the client wrote left of its hop, however broken, is not read.
        let broken_left = origin("for=\"evil, for=198.51.100.7;proto=https, for=10.0.0.2");
        assert_eq!(
            (broken_left.client, broken_left.scheme),
            (client("198.51.100.7", None), Some("https"))
        );
    }

    /// A header value made of `bytes`, the ones a header cannot hold replaced.
    fn header_value(bytes: &[u8]) -> HeaderValue {
        let bytes: Vec<u8> = bytes
            .iter()
            .map(|&byte| {
                if byte == b'\t' || (byte >= 0x20 && byte != 0x7f) {
                    byte
                } else {
                    b'x'
                }
            })
            .collect();
        HeaderValue::from_bytes(&bytes).unwrap()
    }

    /// Bytes a client could send, weighted towards the ones the parsers care about.
    fn client_bytes() -> impl Strategy<Value = Vec<u8>> {
        let interesting = select(b",;=\"\\[]:_ 0123456789.abcdefforFORunknown".to_vec());
        vec(prop_oneof![any::<u8>(), interesting], 0..80)
    }

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: std::env::var("PROPTEST_CASES")
                .ok()
                .and_then(|cases| cases.parse().ok())
                .unwrap_or(2_000),
            ..ProptestConfig::default()
        }
    }

    proptest! {
        #![proptest_config(config())]

        /// From a peer that is not trusted, any bytes in any forwarding header leave the peer as
        /// the client, and never panic.
        #[test]
        fn an_untrusted_peer_is_the_client_whatever_it_sends(
            lines in vec((select(vec!["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded"]), client_bytes()), 0..6),
            forwarded in any::<bool>(),
        ) {
            let family = if forwarded { ForwardedHeaders::Forwarded } else { ForwardedHeaders::XForwarded };
            let proxies = trusting(&["10.0.0.0/8"], family);
            let mut headers = HeaderMap::new();
            for (name, bytes) in &lines {
                headers.append(*name, header_value(bytes));
            }
            let peer = socket("198.51.100.4:5000");
            let origin = proxies.origin(peer, &headers);
            prop_assert_eq!(origin, Origin { peer, client: client("198.51.100.4", Some(5000)), scheme: None, host: None });
        }

        /// Whatever a client writes before the hops trusted proxies append (on the same line or a
        /// line of its own), the client is the hop they name, with its port and scheme; and any
        /// bytes from a trusted peer never panic.
        #[test]
        fn only_trusted_hops_say_who_the_client_is(
            junk in client_bytes(),
            spoofed in vec(any::<[u8; 4]>(), 0..4),
            same_line in any::<bool>(),
            forwarded in any::<bool>(),
            real_client in (any::<[u8; 4]>(), any::<u16>()).prop_filter("not trusted", |(ip, _)| ip[0] != 10),
            proxies_between in 0..4usize,
            arbitrary in vec(client_bytes(), 0..4),
        ) {
            let family = if forwarded { ForwardedHeaders::Forwarded } else { ForwardedHeaders::XForwarded };
            let proxies = trusting(&["10.0.0.0/8"], family);
            let real_address = IpAddr::from(real_client.0);
            let hops: Vec<String> = std::iter::once(real_address.to_string())
                .chain((0..proxies_between).map(|n| format!("10.1.0.{n}")))
                .collect();
            let appended = if forwarded {
                let mut elements = vec![format!("for=\"{real_address}:{}\";proto=https", real_client.1)];
                elements.extend(hops[1..].iter().map(|hop| format!("for={hop};proto=http")));
                elements.join(", ")
            } else {
                hops.join(", ")
            };
            let name = if forwarded { "forwarded" } else { "x-forwarded-for" };
            // What the client sent: junk, then addresses it would like to be.
            let mut prefix = junk.clone();
            for address in &spoofed {
                let address = IpAddr::from(*address);
                let entry = if forwarded { format!(", for={address}") } else { format!(", {address}") };
                prefix.extend_from_slice(entry.as_bytes());
            }
            let mut headers = HeaderMap::new();
            if same_line {
                let mut line = prefix.clone();
                line.extend_from_slice(b", ");
                line.extend_from_slice(appended.as_bytes());
                headers.append(name, header_value(&line));
            } else {
                headers.append(name, header_value(&prefix));
                headers.append(name, header_value(appended.as_bytes()));
            }
            let origin = proxies.origin(socket(PEER), &headers);
            let expected_port = forwarded.then_some(real_client.1);
            prop_assert_eq!(origin.client, Some((real_address, expected_port)));
            prop_assert_eq!(origin.scheme, forwarded.then_some("https"));

            // Arbitrary bytes everywhere, from a trusted peer: no panic.
            let mut headers = HeaderMap::new();
            for bytes in &arbitrary {
                headers.append(name, header_value(bytes));
                headers.append("x-forwarded-proto", header_value(bytes));
                headers.append("x-forwarded-host", header_value(bytes));
            }
            let origin = proxies.origin(socket(PEER), &headers);
            prop_assert!(origin.client.is_some());
        }
    }
}
