//! DNS like a global load balancer, decided: for a route's hostname, the
//! ingress addresses of online hosts in the regions that serve it — for a
//! client whose region is known (`--dns-region CIDR=REGION`), the regions
//! its own region's routing table sends requests to (the primary, or the
//! failover region once the primary has no healthy allocation); for other
//! clients, every serving region. Answers are short-lived (`TTL_SECONDS`),
//! so a failover shows in resolvers within seconds. Pure; the UDP adapter
//! is `dns_server`.

use super::table::RegionRoute;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// How long resolvers may keep an answer.
pub const TTL_SECONDS: u32 = 5;

/// `10.1.0.0/16=eu-west`: clients in this network are in this region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionRule {
    pub network: IpAddr,
    pub prefix: u8,
    pub region: String,
}

/// Why a `--dns-region` rule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--dns-region {0:?} is not CIDR=REGION (for example 10.1.0.0/16=eu-west, or 127.0.0.3/32=us-east)"
)]
pub struct BadRegionRule(pub String);

impl std::str::FromStr for RegionRule {
    type Err = BadRegionRule;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadRegionRule(text.to_owned());
        let (cidr, region) = text.split_once('=').ok_or_else(bad)?;
        let (network, prefix) = cidr.split_once('/').ok_or_else(bad)?;
        let network: IpAddr = network.trim().parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.trim().parse().map_err(|_| bad())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let region = region.trim();
        let region_ok = !region.is_empty()
            && region.len() <= 63
            && region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if prefix > max || !region_ok {
            return Err(bad());
        }
        Ok(Self {
            network,
            prefix,
            region: region.to_owned(),
        })
    }
}

fn bits(ip: IpAddr) -> (u128, u8) {
    match ip {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    }
}

impl RegionRule {
    fn contains(&self, ip: IpAddr) -> bool {
        let ((net, width), (addr, addr_width)) = (bits(self.network), bits(ip));
        if width != addr_width {
            return false;
        }
        let shift = u32::from(width - self.prefix);
        shift >= 128 || (net >> shift) == (addr >> shift)
    }
}

/// The region of a client: the most specific rule that contains it.
pub fn client_region(rules: &[RegionRule], ip: IpAddr) -> Option<&str> {
    rules
        .iter()
        .filter(|r| r.contains(ip))
        .max_by_key(|r| r.prefix)
        .map(|r| r.region.as_str())
}

/// An online host's ingress, for answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingress {
    pub region: String,
    pub address: IpAddr,
}

/// One routed service as the DNS sees it: its hostnames and every
/// region's routing decision.
#[derive(Debug, Clone)]
pub struct NamedRoute<'a> {
    pub hostnames: &'a [String],
    pub by_region: BTreeMap<&'a str, &'a RegionRoute>,
}

/// The addresses for one hostname.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameAnswer {
    /// For a client in the key's region.
    pub by_client_region: BTreeMap<String, Vec<IpAddr>>,
    /// For a client of unknown region: every serving region.
    pub anywhere: Vec<IpAddr>,
}

/// Every hostname's answers, recomputed with the routing tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsTable {
    pub names: BTreeMap<String, NameAnswer>,
}

/// The table for `routes` over the online hosts' `ingresses`.
pub fn dns_table(routes: &[NamedRoute<'_>], ingresses: &[Ingress]) -> DnsTable {
    let addresses_in = |regions: &BTreeSet<&str>| -> Vec<IpAddr> {
        let set: BTreeSet<IpAddr> = ingresses
            .iter()
            .filter(|i| regions.contains(i.region.as_str()))
            .map(|i| i.address)
            .collect();
        set.into_iter().collect()
    };
    let mut names = BTreeMap::new();
    for route in routes {
        let mut answer = NameAnswer::default();
        let mut everywhere = BTreeSet::new();
        for (client, decided) in &route.by_region {
            let serving: BTreeSet<&str> = decided
                .backends
                .iter()
                .filter(|b| b.weight > 0)
                .map(|b| b.region.as_str())
                .collect();
            everywhere.extend(serving.iter().copied());
            answer
                .by_client_region
                .insert((*client).to_owned(), addresses_in(&serving));
        }
        answer.anywhere = addresses_in(&everywhere);
        for hostname in route.hostnames {
            names.insert(hostname.clone(), answer.clone());
        }
    }
    DnsTable { names }
}

/// The record type asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    A,
    Aaaa,
    /// Anything else (MX, TXT, …): the name exists but has no such data.
    Other,
}

/// What to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Authoritative answer with these addresses (none: the name exists,
    /// no address of that type serves it right now).
    Addresses(Vec<IpAddr>),
    /// In the zone, but no route has that name.
    NoSuchName,
    /// Not in the zone: not ours to answer.
    Refused,
}

/// Answers `name` (any case, with or without the final dot) of type
/// `asked` for a client in `client_region`, in `zone`.
pub fn reply(
    table: &DnsTable,
    zone: &str,
    name: &str,
    asked: Asked,
    client_region: Option<&str>,
) -> Reply {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let zone = zone.trim_end_matches('.');
    let in_zone = name == zone
        || name
            .strip_suffix(zone)
            .is_some_and(|rest| rest.ends_with('.'));
    if !in_zone {
        return Reply::Refused;
    }
    let wildcard = name
        .split_once('.')
        .map(|(_, parent)| format!("*.{parent}"));
    let found = table
        .names
        .get(&name)
        .or_else(|| wildcard.and_then(|w| table.names.get(&w)));
    let Some(answer) = found else {
        return if name == zone {
            Reply::Addresses(Vec::new())
        } else {
            Reply::NoSuchName
        };
    };
    let addresses = client_region
        .and_then(|r| answer.by_client_region.get(r))
        .unwrap_or(&answer.anywhere);
    let wanted = |ip: &&IpAddr| match asked {
        Asked::A => ip.is_ipv4(),
        Asked::Aaaa => ip.is_ipv6(),
        Asked::Other => false,
    };
    Reply::Addresses(addresses.iter().filter(wanted).copied().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::table::Backend;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn decided(region: &str, serving: &[(&str, u32)]) -> RegionRoute {
        RegionRoute {
            region: region.to_owned(),
            backends: serving
                .iter()
                .enumerate()
                .map(|(i, (r, weight))| Backend {
                    allocation: format!("a{i}"),
                    host: format!("h{i}"),
                    region: (*r).to_owned(),
                    revision: 1,
                    address: "10.0.0.1:1".to_owned(),
                    weight: *weight,
                })
                .collect(),
            explanation: String::new(),
        }
    }

    fn ingresses() -> Vec<Ingress> {
        [
            ("eu-west", "10.1.0.1"),
            ("eu-west", "10.1.0.2"),
            ("us-east", "10.2.0.1"),
            ("us-east", "fd00::21"),
        ]
        .iter()
        .map(|(r, a)| Ingress {
            region: (*r).to_owned(),
            address: ip(a),
        })
        .collect()
    }

    #[test]
    fn clients_get_the_ingresses_of_the_regions_their_region_is_served_from() {
        let names = vec!["web.apps.example.com".to_owned()];
        // Primary eu-west, healthy: both regions' ingresses send to eu-west.
        let eu = decided("eu-west", &[("eu-west", 1_000_000)]);
        let us = decided("us-east", &[("eu-west", 1_000_000)]);
        let routes = [NamedRoute {
            hostnames: &names,
            by_region: BTreeMap::from([("eu-west", &eu), ("us-east", &us)]),
        }];
        let table = dns_table(&routes, &ingresses());
        let zone = "apps.example.com";
        let eu_ips = Reply::Addresses(vec![ip("10.1.0.1"), ip("10.1.0.2")]);
        for client in [Some("eu-west"), Some("us-east"), None, Some("elsewhere")] {
            assert_eq!(
                reply(&table, zone, "Web.Apps.Example.com.", Asked::A, client),
                eu_ips,
                "{client:?}"
            );
        }
        // After a failover to us-east, the answer follows.
        let eu = decided("eu-west", &[("us-east", 1_000_000), ("eu-west", 0)]);
        let us = decided("us-east", &[("us-east", 1_000_000)]);
        let routes = [NamedRoute {
            hostnames: &names,
            by_region: BTreeMap::from([("eu-west", &eu), ("us-east", &us)]),
        }];
        let table = dns_table(&routes, &ingresses());
        assert_eq!(
            reply(&table, zone, "web.apps.example.com", Asked::A, None),
            Reply::Addresses(vec![ip("10.2.0.1")])
        );
        assert_eq!(
            reply(
                &table,
                zone,
                "web.apps.example.com",
                Asked::Aaaa,
                Some("eu-west")
            ),
            Reply::Addresses(vec![ip("fd00::21")])
        );
        assert_eq!(
            reply(&table, zone, "web.apps.example.com", Asked::Other, None),
            Reply::Addresses(vec![])
        );
    }

    #[test]
    fn nearest_regions_answer_each_client_with_its_own_region() {
        let names = vec!["*.shop.example.com".to_owned()];
        let eu = decided("eu-west", &[("eu-west", 1_000_000)]);
        let us = decided("us-east", &[("us-east", 1_000_000)]);
        let routes = [NamedRoute {
            hostnames: &names,
            by_region: BTreeMap::from([("eu-west", &eu), ("us-east", &us)]),
        }];
        let table = dns_table(&routes, &ingresses());
        let zone = "example.com";
        assert_eq!(
            reply(
                &table,
                zone,
                "a.shop.example.com",
                Asked::A,
                Some("us-east")
            ),
            Reply::Addresses(vec![ip("10.2.0.1")])
        );
        assert_eq!(
            reply(&table, zone, "a.shop.example.com", Asked::A, None),
            Reply::Addresses(vec![ip("10.1.0.1"), ip("10.1.0.2"), ip("10.2.0.1")])
        );
        // A wildcard covers one label only.
        assert_eq!(
            reply(&table, zone, "a.b.shop.example.com", Asked::A, None),
            Reply::NoSuchName
        );
    }

    #[test]
    fn names_outside_the_zone_are_refused_and_unknown_ones_do_not_exist() {
        let table = DnsTable::default();
        let zone = "apps.example.com";
        assert_eq!(
            reply(&table, zone, "example.org", Asked::A, None),
            Reply::Refused
        );
        assert_eq!(
            reply(&table, zone, "xapps.example.com", Asked::A, None),
            Reply::Refused
        );
        assert_eq!(
            reply(&table, zone, "nope.apps.example.com", Asked::A, None),
            Reply::NoSuchName
        );
        assert_eq!(
            reply(&table, zone, "apps.example.com.", Asked::A, None),
            Reply::Addresses(vec![])
        );
    }

    #[test]
    fn nothing_serving_answers_no_address() {
        let names = vec!["web.apps.example.com".to_owned()];
        let eu = decided("eu-west", &[]);
        let routes = [NamedRoute {
            hostnames: &names,
            by_region: BTreeMap::from([("eu-west", &eu)]),
        }];
        let table = dns_table(&routes, &ingresses());
        assert_eq!(
            reply(
                &table,
                "apps.example.com",
                "web.apps.example.com",
                Asked::A,
                None
            ),
            Reply::Addresses(vec![])
        );
    }

    #[test]
    fn region_rules_parse_and_the_most_specific_wins() {
        let rules: Vec<RegionRule> = [
            "10.0.0.0/8=eu-west",
            "10.2.0.0/16=us-east",
            "fd00::/8=ap-south",
        ]
        .iter()
        .map(|r| r.parse().unwrap())
        .collect();
        assert_eq!(client_region(&rules, ip("10.1.2.3")), Some("eu-west"));
        assert_eq!(client_region(&rules, ip("10.2.2.3")), Some("us-east"));
        assert_eq!(client_region(&rules, ip("fd12::1")), Some("ap-south"));
        assert_eq!(client_region(&rules, ip("192.168.1.1")), None);
        let all: RegionRule = "0.0.0.0/0=eu-west".parse().unwrap();
        assert_eq!(client_region(&[all], ip("192.168.1.1")), Some("eu-west"));
        let host: RegionRule = "127.0.0.3/32=us-east".parse().unwrap();
        assert_eq!(
            client_region(std::slice::from_ref(&host), ip("127.0.0.3")),
            Some("us-east")
        );
        assert_eq!(client_region(&[host], ip("127.0.0.1")), None);
        for bad in [
            "10.0.0.0/8",
            "10.0.0.0=eu",
            "10.0.0.0/33=eu",
            "x/8=eu",
            "10.0.0.0/8=EU",
            "10.0.0.0/8=",
        ] {
            assert_eq!(
                bad.parse::<RegionRule>(),
                Err(BadRegionRule(bad.to_owned())),
                "{bad}"
            );
        }
    }
}
