//! The address guard: which IP addresses deliveries may not reach (SSRF protection).
//!
//! [`classify`] is a pure function over one address. [`AddressPolicy`] applies it: on by
//! default, it refuses every non-public range; [`AddressPolicy::allow_private`] turns it off
//! for tests, examples and on-premise installs whose endpoints live on a private network.
//!
//! The default transport applies the policy to IP-literal URLs before connecting and to
//! every address a host name resolves to, at send time (so a name that changes to a private
//! address after it was configured is still refused). A name is refused when *any* of its
//! addresses is blocked: a mixed answer is the shape of a DNS-rebinding attack.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// A non-public address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BlockedRange {
    /// `0.0.0.0`, `::`.
    Unspecified,
    /// `0.0.0.0/8`: "this network".
    ThisNetwork,
    /// `127.0.0.0/8`, `::1`, and the name `localhost`.
    Loopback,
    /// `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`.
    Private,
    /// `100.64.0.0/10`: carrier-grade NAT.
    SharedAddressSpace,
    /// `169.254.0.0/16`, `fe80::/10` (cloud metadata services live here).
    LinkLocal,
    /// `192.0.0.0/24`: IETF protocol assignments.
    IetfProtocol,
    /// `192.0.2.0/24`, `198.51.100.0/24`, `203.0.113.0/24`, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// `198.18.0.0/15`, `2001:2::/48`.
    Benchmarking,
    /// `240.0.0.0/4` and other reserved IPv6 space (`fec0::/10` site-local, `100::/64`
    /// discard-only, `2001:10::/28`, `::/96` IPv4-compatible, `192.88.99.0/24`).
    Reserved,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `fc00::/7`: IPv6 unique local addresses.
    UniqueLocal,
    /// `::ffff:0:0/96`: an IPv4 address written as IPv6.
    Ipv4Mapped,
    /// `64:ff9b::/96` and `64:ff9b:1::/48`: NAT64 translation of an IPv4 address.
    Nat64,
    /// `2002::/16`: 6to4, which embeds an IPv4 address.
    SixToFour,
    /// `2001::/32`: Teredo tunnelling, which embeds an IPv4 address.
    Teredo,
}

impl BlockedRange {
    /// A short name for messages.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::ThisNetwork => "this-network",
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::SharedAddressSpace => "shared (carrier-grade NAT)",
            Self::LinkLocal => "link-local",
            Self::IetfProtocol => "IETF protocol",
            Self::Documentation => "documentation",
            Self::Benchmarking => "benchmarking",
            Self::Reserved => "reserved",
            Self::Multicast => "multicast",
            Self::Broadcast => "broadcast",
            Self::UniqueLocal => "unique-local",
            Self::Ipv4Mapped => "IPv4-mapped",
            Self::Nat64 => "NAT64",
            Self::SixToFour => "6to4",
            Self::Teredo => "Teredo",
        }
    }
}

impl fmt::Display for BlockedRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The non-public range `ip` falls in, or `None` for a public address.
pub fn classify(ip: IpAddr) -> Option<BlockedRange> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<BlockedRange> {
    use BlockedRange::*;
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_unspecified() => Unspecified,
        _ if ip.is_broadcast() => Broadcast,
        (0, _, _) => ThisNetwork,
        (127, _, _) => Loopback,
        (10, _, _) | (192, 168, _) => Private,
        (172, 16..=31, _) => Private,
        (100, 64..=127, _) => SharedAddressSpace,
        (169, 254, _) => LinkLocal,
        (192, 0, 0) => IetfProtocol,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => Documentation,
        (198, 18..=19, _) => Benchmarking,
        (192, 88, 99) => Reserved,
        (224..=239, _, _) => Multicast,
        (240..=255, _, _) => Reserved,
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<BlockedRange> {
    use BlockedRange::*;
    let s = ip.segments();
    Some(match s {
        _ if ip.is_unspecified() => Unspecified,
        _ if ip.is_loopback() => Loopback,
        [0, 0, 0, 0, 0, 0xffff, _, _] => Ipv4Mapped,
        [0, 0, 0, 0, 0, 0, _, _] => Reserved, // IPv4-compatible, deprecated
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] | [0x64, 0xff9b, 1, ..] => Nat64,
        [0x100, 0, 0, 0, ..] => Reserved, // discard-only
        [0x2001, 0, ..] => Teredo,
        [0x2001, 2, 0, ..] => Benchmarking,
        [0x2001, 0x10..=0x1f, ..] => Reserved, // ORCHID
        [0x2001, 0xdb8, ..] => Documentation,
        [0x2002, ..] => SixToFour,
        [0x3fff, 0..=0x0fff, ..] => Documentation,
        [first, ..] if first & 0xfe00 == 0xfc00 => UniqueLocal,
        [first, ..] if first & 0xffc0 == 0xfe80 => LinkLocal,
        [first, ..] if first & 0xffc0 == 0xfec0 => Reserved, // site-local, deprecated
        [first, ..] if first & 0xff00 == 0xff00 => Multicast,
        _ => return None,
    })
}

/// Which addresses deliveries may reach. The default refuses every range [`classify`]
/// reports; [`allow_range`](Self::allow_range) lets listed networks through on top of that
/// (an on-premise install that must reach one internal subnet, and no other).
///
/// ```
/// use dataops_webhooks::transport::guard::AddressPolicy;
///
/// let policy = AddressPolicy::public_only().allow_range("10.20.0.0/16".parse()?);
/// assert!(policy.check("10.20.3.4".parse()?).is_ok());
/// assert!(policy.check("10.21.0.1".parse()?).is_err()); // another private range
/// assert!(policy.check("8.8.8.8".parse()?).is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct AddressPolicy {
    allow_private: bool,
    /// Networks allowed whatever their range.
    allowed: Vec<IpNet>,
}

impl AddressPolicy {
    /// The default: public addresses only.
    pub const fn public_only() -> Self {
        Self {
            allow_private: false,
            allowed: Vec::new(),
        }
    }

    /// Any address, loopback and private included: for tests, examples and on-premise
    /// installs. Never use it where users configure their own URLs on a shared service.
    pub const fn allow_private() -> Self {
        Self {
            allow_private: true,
            allowed: Vec::new(),
        }
    }

    /// Also allows every address of `network` (`10.20.0.0/16`, `fd00:1::/64`, or
    /// `127.0.0.0/8` for a loopback test), whatever range it falls in. An IPv4 network also
    /// covers its IPv4-mapped IPv6 addresses.
    #[must_use]
    pub fn allow_range(mut self, network: IpNet) -> Self {
        self.allowed.push(network.trunc());
        self
    }

    /// The networks [`allow_range`](Self::allow_range) added.
    pub fn allowed_ranges(&self) -> &[IpNet] {
        &self.allowed
    }

    /// Whether non-public addresses are refused (apart from the allowed ranges).
    pub const fn blocks_private(&self) -> bool {
        !self.allow_private
    }

    /// Whether `ip` is in an allowed range.
    fn listed(&self, ip: IpAddr) -> bool {
        let mapped = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        self.allowed
            .iter()
            .any(|net| net.contains(&ip) || mapped.is_some_and(|v4| net.contains(&v4)))
    }

    /// Checks one address.
    ///
    /// # Errors
    /// The range the address falls in, when the policy refuses it.
    pub fn check(&self, ip: IpAddr) -> Result<(), BlockedRange> {
        match classify(ip) {
            Some(range) if self.blocks_private() && !self.listed(ip) => Err(range),
            _ => Ok(()),
        }
    }

    /// Checks a host name before it is resolved: `localhost` and `*.localhost` always mean
    /// loopback (RFC 6761), so they are refused without a lookup, unless the loopback
    /// addresses are allowed.
    ///
    /// # Errors
    /// [`BlockedRange::Loopback`] for those names, when the policy refuses loopback.
    pub fn check_name(&self, name: &str) -> Result<(), BlockedRange> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let loopback = name == "localhost" || name.ends_with(".localhost");
        // The name passes when some loopback address is allowed; each address it resolves
        // to is checked again.
        let loopback_allowed = self.listed(IpAddr::V4(Ipv4Addr::LOCALHOST))
            || self.listed(IpAddr::V6(Ipv6Addr::LOCALHOST));
        if loopback && self.blocks_private() && !loopback_allowed {
            Err(BlockedRange::Loopback)
        } else {
            Ok(())
        }
    }
}

/// A delivery refused by the address guard: the error a transport returns, found again in
/// an error's source chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused to connect to {host} ({ip}): {range} addresses are blocked by the address policy")]
pub struct BlockedAddress {
    /// The host as in the URL.
    pub host: String,
    /// The address refused (for a name, the first blocked one it resolved to).
    pub ip: String,
    /// Its range.
    pub range: BlockedRange,
}

#[cfg(test)]
mod tests {
    use super::*;
    use BlockedRange::*;

    fn of(text: &str) -> Option<BlockedRange> {
        classify(text.parse().unwrap_or_else(|e| panic!("{text}: {e}")))
    }

    #[test]
    fn ipv4_ranges() {
        let cases = [
            ("0.0.0.0", Some(Unspecified)),
            ("0.1.2.3", Some(ThisNetwork)),
            ("10.0.0.1", Some(Private)),
            ("10.255.255.255", Some(Private)),
            ("100.63.255.255", None),
            ("100.64.0.1", Some(SharedAddressSpace)),
            ("100.127.255.254", Some(SharedAddressSpace)),
            ("100.128.0.0", None),
            ("127.0.0.1", Some(Loopback)),
            ("127.255.255.254", Some(Loopback)),
            ("169.254.169.254", Some(LinkLocal)),
            ("172.15.255.255", None),
            ("172.16.0.1", Some(Private)),
            ("172.31.255.255", Some(Private)),
            ("172.32.0.0", None),
            ("192.0.0.8", Some(IetfProtocol)),
            ("192.0.2.10", Some(Documentation)),
            ("192.88.99.1", Some(Reserved)),
            ("192.168.1.1", Some(Private)),
            ("198.17.255.255", None),
            ("198.18.0.1", Some(Benchmarking)),
            ("198.19.255.255", Some(Benchmarking)),
            ("198.51.100.7", Some(Documentation)),
            ("203.0.113.9", Some(Documentation)),
            ("224.0.0.1", Some(Multicast)),
            ("239.255.255.250", Some(Multicast)),
            ("240.0.0.1", Some(Reserved)),
            ("255.255.255.255", Some(Broadcast)),
            ("1.1.1.1", None),
            ("8.8.8.8", None),
            ("93.184.216.34", None),
            ("192.0.1.255", None),
            ("223.255.255.255", None),
        ];
        for (ip, expected) in cases {
            assert_eq!(of(ip), expected, "{ip}");
        }
    }

    #[test]
    fn ipv6_ranges() {
        let cases = [
            ("::", Some(Unspecified)),
            ("::1", Some(Loopback)),
            ("::ffff:127.0.0.1", Some(Ipv4Mapped)),
            ("::ffff:8.8.8.8", Some(Ipv4Mapped)),
            ("::127.0.0.1", Some(Reserved)),
            ("64:ff9b::10.0.0.1", Some(Nat64)),
            ("64:ff9b:1::1", Some(Nat64)),
            ("100::1", Some(Reserved)),
            ("2001::1", Some(Teredo)),
            ("2001:2::1", Some(Benchmarking)),
            ("2001:10::1", Some(Reserved)),
            ("2001:db8::1", Some(Documentation)),
            ("2002:c0a8:101::1", Some(SixToFour)),
            ("3fff::1", Some(Documentation)),
            ("fc00::1", Some(UniqueLocal)),
            ("fd12:3456::1", Some(UniqueLocal)),
            ("fe80::1", Some(LinkLocal)),
            ("febf::1", Some(LinkLocal)),
            ("fec0::1", Some(Reserved)),
            ("ff02::1", Some(Multicast)),
            ("2606:4700:4700::1111", None),
            ("2001:4860:4860::8888", None),
            ("2a00:1450::1", None),
            ("4000::1", None),
        ];
        for (ip, expected) in cases {
            assert_eq!(of(ip), expected, "{ip}");
        }
    }

    #[test]
    fn policy_blocks_by_default_and_allows_when_asked() {
        let loopback: IpAddr = Ipv4Addr::LOCALHOST.into();
        assert_eq!(AddressPolicy::default().check(loopback), Err(Loopback));
        assert_eq!(AddressPolicy::allow_private().check(loopback), Ok(()));
        assert_eq!(
            AddressPolicy::default().check("8.8.8.8".parse().expect("ip")),
            Ok(())
        );
        assert_eq!(
            AddressPolicy::default().check_name("LOCALHOST."),
            Err(Loopback)
        );
        assert_eq!(
            AddressPolicy::default().check_name("a.b.localhost"),
            Err(Loopback)
        );
        assert_eq!(
            AddressPolicy::default().check_name("localhost.example.com"),
            Ok(())
        );
        assert_eq!(
            AddressPolicy::allow_private().check_name("localhost"),
            Ok(())
        );
    }

    fn net(text: &str) -> IpNet {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn allowed_ranges_open_only_themselves() {
        let policy = AddressPolicy::public_only()
            .allow_range(net("10.20.0.0/16"))
            .allow_range(net("fd00:1::/64"));
        for allowed in [
            "10.20.0.0",
            "10.20.255.255",
            "::ffff:10.20.1.1",
            "fd00:1::9",
            "8.8.8.8",
        ] {
            assert_eq!(policy.check(ip(allowed)), Ok(()), "{allowed}");
        }
        for (blocked, range) in [
            ("10.21.0.1", Private),
            ("10.19.255.255", Private),
            ("127.0.0.1", Loopback),
            ("169.254.169.254", LinkLocal),
            ("fd00:2::1", UniqueLocal),
            ("::1", Loopback),
        ] {
            assert_eq!(policy.check(ip(blocked)), Err(range), "{blocked}");
        }
        assert_eq!(policy.check_name("localhost"), Err(Loopback));
        // Host bits are dropped: `10.20.3.4/16` is the network `10.20.0.0/16`.
        let sloppy = AddressPolicy::public_only().allow_range(net("10.20.3.4/16"));
        assert_eq!(sloppy.allowed_ranges(), &[net("10.20.0.0/16")]);
        assert_eq!(sloppy.check(ip("10.20.200.1")), Ok(()));
    }

    #[test]
    fn an_allowed_loopback_range_lets_localhost_through_to_the_resolver() {
        let policy = AddressPolicy::public_only().allow_range(net("127.0.0.0/8"));
        assert_eq!(policy.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(policy.check(ip("127.255.0.9")), Ok(()));
        assert_eq!(policy.check(ip("::ffff:127.0.0.1")), Ok(()), "IPv4-mapped");
        assert_eq!(
            policy.check(ip("::1")),
            Err(Loopback),
            "IPv6 loopback is another range"
        );
        assert_eq!(policy.check(ip("10.0.0.1")), Err(Private));
        assert_eq!(
            policy.check_name("localhost"),
            Ok(()),
            "each address is checked after"
        );
        assert!(policy.blocks_private());
    }
}
