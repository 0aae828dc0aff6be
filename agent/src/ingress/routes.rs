//! The ingress's routing decisions (pure: no I/O, no clock): a
//! `RoutingTable` from the control plane compiled into a per-request
//! lookup — exact hostname before a one-label `*.` wildcard, then the
//! longest path prefix on a `/` boundary, the same rules as the control
//! plane's `routing::hosts` — and the weighted choice of a backend with
//! local preference, skipping ejected and already-tried backends.
//!
//! Weights are parts per million. A revision's share of a route is the
//! sum of its backends' weights; when this host runs backends of that
//! revision with weight, the whole share goes to them (no hop to another
//! host) and the split between revisions stays as the control plane set
//! it. Backends the caller cannot use (ejected, already tried) are
//! skipped and the rest of their revision takes their part; a revision
//! with no usable backend left drops out and the others are renormalised.
//! Weight 0 means draining: never chosen for a new request.

use crate::secret_cache::SecretId;
use argosy_proto::v1::{RoutingTable, route_tls};
use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;

/// One backend a route can send requests to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub allocation: String,
    pub host: String,
    pub address: SocketAddr,
    /// Parts per million; 0: draining or standby.
    pub weight: u32,
    /// Runs on this agent's host.
    pub local: bool,
    /// Used only when no backend with weight can be reached.
    pub standby: bool,
}

/// One revision's backends within a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionGroup {
    pub revision: u64,
    /// The revision's part of the route: the sum of its backends' weights.
    pub share: u64,
    /// Index of `(service, revision)` in [`Table::revisions`].
    pub slot: usize,
    pub backends: Vec<Backend>,
}

impl RevisionGroup {
    /// Whether the local backends take this revision's share, and the
    /// summed weight of the candidates (0: none usable).
    fn candidates(&self, usable: &impl Fn(&Backend) -> bool) -> (bool, u64) {
        let (mut local, mut all) = (0u64, 0u64);
        for backend in self.backends.iter().filter(|b| b.weight > 0 && usable(b)) {
            all += u64::from(backend.weight);
            if backend.local {
                local += u64::from(backend.weight);
            }
        }
        if local > 0 {
            (true, local)
        } else {
            (false, all)
        }
    }
}

/// Where a route's TLS certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    /// Plain HTTP only.
    None,
    /// Made by the agent for the route's hostnames.
    SelfSigned,
    /// A secret holding the PEM chain followed by the PEM private key.
    Secret(SecretId),
}

/// One service's route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub service: String,
    /// Lowercase, exact or `*.` wildcard.
    pub hostnames: Vec<String>,
    pub tls: Tls,
    pub explanation: String,
    pub revisions: Vec<RevisionGroup>,
}

/// The backend chosen for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick<'a> {
    pub group: &'a RevisionGroup,
    pub backend: &'a Backend,
}

impl Route {
    /// Whether any backend carries weight (else the route answers 503
    /// with its explanation).
    pub fn has_weight(&self) -> bool {
        self.revisions.iter().any(|g| g.share > 0)
    }

    /// Chooses a backend for `random` (any `u64`, uniformly drawn by the
    /// caller), among the backends with weight that `usable` accepts.
    /// `None`: no usable backend carries weight.
    pub fn pick(&self, random: u64, usable: impl Fn(&Backend) -> bool) -> Option<Pick<'_>> {
        let total: u64 = self
            .revisions
            .iter()
            .filter(|g| g.candidates(&usable).1 > 0)
            .map(|g| g.share)
            .sum();
        if total == 0 {
            return None;
        }
        let mut point = random % total;
        for group in &self.revisions {
            let (local, sum) = group.candidates(&usable);
            if sum == 0 {
                continue;
            }
            if point >= group.share {
                point -= group.share;
                continue;
            }
            // Scale the point within the revision's share to its candidates.
            let mut target =
                u64::try_from(u128::from(point) * u128::from(sum) / u128::from(group.share))
                    .unwrap_or(0);
            for backend in group
                .backends
                .iter()
                .filter(|b| b.weight > 0 && (!local || b.local) && usable(b))
            {
                let weight = u64::from(backend.weight);
                if target < weight {
                    return Some(Pick { group, backend });
                }
                target -= weight;
            }
        }
        None
    }
}

impl Route {
    /// Chooses a standby for `random` among those `usable` accepts, local
    /// ones first: the fallback when no backend with weight can be reached.
    pub fn pick_standby(&self, random: u64, usable: impl Fn(&Backend) -> bool) -> Option<Pick<'_>> {
        let standbys: Vec<Pick<'_>> = self
            .revisions
            .iter()
            .flat_map(|group| {
                group
                    .backends
                    .iter()
                    .filter(|b| b.standby && usable(b))
                    .map(move |backend| Pick { group, backend })
            })
            .collect();
        let local: Vec<&Pick<'_>> = standbys.iter().filter(|p| p.backend.local).collect();
        if !local.is_empty() {
            let index = usize::try_from(random % local.len() as u64).unwrap_or(0);
            return Some(*local[index]);
        }
        if standbys.is_empty() {
            return None;
        }
        let index = usize::try_from(random % standbys.len() as u64).unwrap_or(0);
        Some(standbys[index])
    }
}

/// A path prefix of a hostname, pointing at its route.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PathRule {
    prefix: String,
    route: usize,
}

/// A compiled routing table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    pub version: u64,
    pub routes: Vec<Route>,
    /// Every `(service, revision)` the routes send to, once each.
    pub revisions: Vec<(String, u64)>,
    /// Hostname → path rules, longest prefix first.
    exact: HashMap<String, Vec<PathRule>>,
    /// Wildcard suffix (`example.com` for `*.example.com`) → path rules.
    wildcard: HashMap<String, Vec<PathRule>>,
}

/// Something in a table the ingress could not use; the rest applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    BadAddress {
        service: String,
        allocation: String,
        address: String,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::BadAddress {
                service,
                allocation,
                address,
            } => write!(
                f,
                "service {service}: backend {allocation} has the address {address:?}, not ip:port; it gets no requests"
            ),
        }
    }
}

/// `/a/` and `/a` are the same prefix; an empty one is `/`.
fn normalize_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim().trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else if trimmed.starts_with('/') {
        trimmed.to_owned()
    } else {
        format!("/{trimmed}")
    }
}

fn normalize_hostname(hostname: &str) -> String {
    hostname.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Whether `prefix` covers `path` on a `/` boundary.
fn path_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The hostname of a `Host` header or `:authority`: without the port or a
/// trailing dot, lowercased (borrowed unless it had capitals).
pub fn request_host(authority: &str) -> Cow<'_, str> {
    let host = if authority.starts_with('[') {
        authority
            .find(']')
            .map_or(authority, |end| &authority[..=end])
    } else {
        authority.split(':').next().unwrap_or("")
    };
    let host = host.trim_end_matches('.');
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// The wildcard suffix a host falls under (`b.c` for `a.b.c`).
pub fn wildcard_suffix(host: &str) -> Option<&str> {
    host.split_once('.')
        .map(|(_, rest)| rest)
        .filter(|rest| !rest.is_empty())
}

impl Table {
    /// Compiles `wire` for the agent of `local_host`. Backends whose
    /// address is not `ip:port` are left out and named in the problems.
    pub fn compile(wire: &RoutingTable, local_host: &str) -> (Self, Vec<Problem>) {
        let mut table = Table {
            version: wire.version,
            ..Table::default()
        };
        let mut problems = Vec::new();
        let mut slots: HashMap<(String, u64), usize> = HashMap::new();
        for route in &wire.routes {
            let index = table.routes.len();
            let mut revisions: Vec<RevisionGroup> = Vec::new();
            for backend in &route.backends {
                let Ok(address) = backend.address.trim().parse::<SocketAddr>() else {
                    problems.push(Problem::BadAddress {
                        service: route.service.clone(),
                        allocation: backend.allocation.clone(),
                        address: backend.address.clone(),
                    });
                    continue;
                };
                let i = match revisions
                    .iter()
                    .position(|g| g.revision == backend.revision)
                {
                    Some(i) => i,
                    None => {
                        let key = (route.service.clone(), backend.revision);
                        let next = table.revisions.len();
                        let slot = *slots.entry(key.clone()).or_insert_with(|| {
                            table.revisions.push(key);
                            next
                        });
                        revisions.push(RevisionGroup {
                            revision: backend.revision,
                            share: 0,
                            slot,
                            backends: Vec::new(),
                        });
                        revisions.len() - 1
                    }
                };
                let group = &mut revisions[i];
                group.share += u64::from(backend.weight);
                group.backends.push(Backend {
                    allocation: backend.allocation.clone(),
                    host: backend.host.clone(),
                    address,
                    weight: backend.weight,
                    local: backend.host == local_host,
                    standby: backend.standby && backend.weight == 0,
                });
            }
            let hostnames: Vec<String> = route
                .hostnames
                .iter()
                .map(|h| normalize_hostname(h))
                .collect();
            let mut paths: Vec<String> = route.paths.iter().map(|p| normalize_prefix(p)).collect();
            if paths.is_empty() {
                paths.push("/".to_owned());
            }
            for hostname in &hostnames {
                let (map, key) = match hostname.strip_prefix("*.") {
                    Some(suffix) => (&mut table.wildcard, suffix.to_owned()),
                    None => (&mut table.exact, hostname.clone()),
                };
                let rules = map.entry(key).or_default();
                for prefix in &paths {
                    // The control plane refuses a (hostname, path) held
                    // twice; should one come anyway, the first route keeps it.
                    if !rules.iter().any(|r| r.prefix == *prefix) {
                        rules.push(PathRule {
                            prefix: prefix.clone(),
                            route: index,
                        });
                    }
                }
            }
            table.routes.push(Route {
                service: route.service.clone(),
                hostnames,
                tls: match route.tls.as_ref().and_then(|t| t.source.as_ref()) {
                    Some(route_tls::Source::SelfSigned(true)) => Tls::SelfSigned,
                    Some(route_tls::Source::Certificate(secret)) => {
                        Tls::Secret(SecretId::from_wire(secret))
                    }
                    Some(route_tls::Source::SelfSigned(false)) | None => Tls::None,
                },
                explanation: route.explanation.clone(),
                revisions,
            });
        }
        for rules in table.exact.values_mut().chain(table.wildcard.values_mut()) {
            rules.sort_by_key(|rule| std::cmp::Reverse(rule.prefix.len()));
        }
        (table, problems)
    }

    /// The route for a request's `Host`/`:authority` and path: the exact
    /// hostname if one of its prefixes matches, else its wildcard.
    pub fn lookup(&self, authority: &str, path: &str) -> Option<&Route> {
        let host = request_host(authority);
        let find = |rules: Option<&Vec<PathRule>>| {
            rules?
                .iter()
                .find(|r| path_matches(&r.prefix, path))
                .map(|r| &self.routes[r.route])
        };
        find(self.exact.get(host.as_ref()))
            .or_else(|| find(self.wildcard.get(wildcard_suffix(&host)?)))
    }

    /// Every backend address in the table.
    pub fn addresses(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.routes
            .iter()
            .flat_map(|r| &r.revisions)
            .flat_map(|g| &g.backends)
            .map(|b| b.address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argosy_proto::v1::{Route as WireRoute, RouteBackend, RouteTls, SecretRef};
    use std::collections::{BTreeMap, BTreeSet};

    fn backend(
        allocation: &str,
        host: &str,
        revision: u64,
        port: u16,
        weight: u32,
    ) -> RouteBackend {
        RouteBackend {
            allocation: allocation.into(),
            host: host.into(),
            region: "eu".into(),
            revision,
            address: format!("10.0.0.1:{port}"),
            weight,
            standby: false,
        }
    }

    #[test]
    fn standbys_are_only_a_fallback_and_local_ones_come_first() {
        let mut far = backend("a2", "h-far", 1, 2, 0);
        far.standby = true;
        let mut near = backend("a3", "local", 1, 3, 0);
        near.standby = true;
        let draining = backend("a4", "local", 1, 4, 0);
        let route = WireRoute {
            backends: vec![
                backend("a1", "h-other", 1, 1, 1_000_000),
                far,
                near,
                draining,
            ],
            ..one("web", &["web.test"], &["/"])
        };
        let table = compile(vec![route]);
        let route = &table.routes[0];
        // Weighted backends first, always.
        for random in 0..50 {
            assert_eq!(
                route.pick(random, |_| true).unwrap().backend.allocation,
                "a1"
            );
        }
        // Nothing weighted left: the local standby, else the other; never
        // the draining backend.
        let without_a1 = |b: &Backend| b.allocation != "a1";
        assert!(route.pick(7, without_a1).is_none());
        for random in 0..50 {
            assert_eq!(
                route
                    .pick_standby(random, without_a1)
                    .unwrap()
                    .backend
                    .allocation,
                "a3"
            );
        }
        let only_far = |b: &Backend| b.allocation == "a2";
        assert_eq!(
            route.pick_standby(3, only_far).unwrap().backend.allocation,
            "a2"
        );
        assert!(route.pick_standby(3, |b| b.allocation == "a4").is_none());
        assert!(!route.revisions[0].backends[3].standby);
        assert_eq!(route.revisions[0].share, 1_000_000, "standbys add no share");
    }

    fn route(
        service: &str,
        hosts: &[&str],
        paths: &[&str],
        backends: Vec<RouteBackend>,
    ) -> WireRoute {
        WireRoute {
            service: service.into(),
            hostnames: hosts.iter().map(|h| (*h).into()).collect(),
            paths: paths.iter().map(|p| (*p).into()).collect(),
            tls: None,
            backends,
            explanation: format!("{service} explained"),
        }
    }

    fn compile(routes: Vec<WireRoute>) -> Table {
        let (table, problems) = Table::compile(
            &RoutingTable {
                version: 7,
                routes,
                ..RoutingTable::default()
            },
            "local",
        );
        assert!(problems.is_empty(), "{problems:?}");
        table
    }

    fn one(service: &str, hosts: &[&str], paths: &[&str]) -> WireRoute {
        route(
            service,
            hosts,
            paths,
            vec![backend(service, "h", 1, 80, 1_000_000)],
        )
    }

    #[test]
    fn hosts_and_paths_go_to_the_most_specific_route() {
        let table = compile(vec![
            one("root", &["example.com"], &["/"]),
            one("api", &["example.com"], &["/api/"]),
            one("api-v2", &["example.com"], &["/api/v2"]),
            one("wild", &["*.example.com"], &["/"]),
            one("wild-admin", &["*.example.com"], &["/admin"]),
            one("shop", &["Shop.Example.com."], &[]),
            one("deep", &["*.eu.example.com"], &["/"]),
        ]);
        let cases = [
            ("example.com", "/", Some("root")),
            ("example.com", "/index.html", Some("root")),
            ("example.com", "/api", Some("api")),
            ("example.com", "/api/x", Some("api")),
            ("example.com", "/apix", Some("root")),
            ("example.com", "/api/v2", Some("api-v2")),
            ("example.com", "/api/v2/users", Some("api-v2")),
            ("example.com", "/api/v20", Some("api")),
            ("EXAMPLE.com:8080", "/api/x", Some("api")),
            ("example.com.", "/", Some("root")),
            ("www.example.com", "/", Some("wild")),
            ("www.example.com", "/admin/users", Some("wild-admin")),
            ("www.example.com:443", "/administrator", Some("wild")),
            // An exact hostname wins over the wildcard that also matches.
            ("shop.example.com", "/admin", Some("shop")),
            ("SHOP.EXAMPLE.COM", "/", Some("shop")),
            // A wildcard is exactly one label.
            ("a.b.example.com", "/", None),
            ("x.eu.example.com", "/", Some("deep")),
            ("eu.example.com", "/", Some("wild")),
            ("example.org", "/", None),
            ("", "/", None),
            ("[::1]:8080", "/", None),
        ];
        for (host, path, expected) in cases {
            let got = table.lookup(host, path).map(|r| r.service.as_str());
            assert_eq!(got, expected, "{host} {path}");
        }
    }

    #[test]
    fn an_exact_host_without_a_matching_path_falls_back_to_its_wildcard() {
        let table = compile(vec![
            one("exact-api", &["a.example.com"], &["/api"]),
            one("wild", &["*.example.com"], &["/"]),
        ]);
        assert_eq!(
            table.lookup("a.example.com", "/api/1").unwrap().service,
            "exact-api"
        );
        assert_eq!(
            table.lookup("a.example.com", "/other").unwrap().service,
            "wild"
        );
    }

    #[test]
    fn request_hosts_lose_their_port_and_case() {
        assert_eq!(request_host("Example.COM:80"), "example.com");
        assert!(matches!(request_host("example.com"), Cow::Borrowed(_)));
        assert_eq!(request_host("[::1]:443"), "[::1]");
        assert_eq!(request_host("a.b."), "a.b");
        assert_eq!(wildcard_suffix("a.b.c"), Some("b.c"));
        assert_eq!(wildcard_suffix("localhost"), None);
    }

    #[test]
    fn tls_sources_and_bad_addresses_compile() {
        let mut secret = one("s", &["s.example.com"], &["/"]);
        secret.tls = Some(RouteTls {
            source: Some(route_tls::Source::Certificate(SecretRef {
                name: "certs/s".into(),
                version: 3,
            })),
        });
        let mut selfsigned = one("t", &["t.example.com"], &["/"]);
        selfsigned.tls = Some(RouteTls {
            source: Some(route_tls::Source::SelfSigned(true)),
        });
        let mut bad = one("u", &["u.example.com"], &["/"]);
        bad.backends.push(RouteBackend {
            address: "somewhere".into(),
            ..backend("u-2", "h", 1, 1, 5)
        });
        let (table, problems) = Table::compile(
            &RoutingTable {
                version: 1,
                routes: vec![secret, selfsigned, bad],
                ..RoutingTable::default()
            },
            "h",
        );
        assert_eq!(
            table.routes[0].tls,
            Tls::Secret(SecretId::new("certs/s", 3))
        );
        assert_eq!(table.routes[1].tls, Tls::SelfSigned);
        assert_eq!(table.routes[2].tls, Tls::None);
        assert_eq!(table.routes[2].revisions[0].backends.len(), 1);
        assert_eq!(
            problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "service u: backend u-2 has the address \"somewhere\", not ip:port; it gets no requests"
            ]
        );
        assert!(table.routes[2].revisions[0].backends[0].local);
    }

    /// Picks `n` times with evenly spread random numbers and counts by
    /// allocation.
    fn draws(route: &Route, n: u64, usable: impl Fn(&Backend) -> bool) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..n {
            // xorshift: deterministic, well spread.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if let Some(pick) = route.pick(x, &usable) {
                *counts.entry(pick.backend.allocation.clone()).or_default() += 1;
            }
        }
        counts
    }

    fn near(count: u64, n: u64, expected_ppm: u64) -> bool {
        let expected = n * expected_ppm / 1_000_000;
        count.abs_diff(expected) <= n / 50
    }

    #[test]
    fn weights_split_requests_within_tolerance_and_zero_is_never_chosen() {
        let table = compile(vec![route(
            "web",
            &["w"],
            &["/"],
            vec![
                backend("a", "h1", 1, 1, 600_000),
                backend("b", "h2", 1, 2, 300_000),
                backend("c", "h3", 2, 3, 100_000),
                backend("drain", "h4", 1, 4, 0),
            ],
        )]);
        let route = &table.routes[0];
        assert!(route.has_weight());
        let n = 20_000;
        let counts = draws(route, n, |_| true);
        assert!(near(counts["a"], n, 600_000), "{counts:?}");
        assert!(near(counts["b"], n, 300_000), "{counts:?}");
        assert!(near(counts["c"], n, 100_000), "{counts:?}");
        assert!(!counts.contains_key("drain"), "{counts:?}");
        // Exact boundaries, not only statistics.
        assert_eq!(route.pick(0, |_| true).unwrap().backend.allocation, "a");
        assert_eq!(
            route.pick(599_999, |_| true).unwrap().backend.allocation,
            "a"
        );
        assert_eq!(
            route.pick(600_000, |_| true).unwrap().backend.allocation,
            "b"
        );
        assert_eq!(
            route.pick(999_999, |_| true).unwrap().backend.allocation,
            "c"
        );
    }

    #[test]
    fn a_route_without_weight_picks_nothing() {
        let table = compile(vec![route(
            "web",
            &["w"],
            &["/"],
            vec![backend("drain", "local", 1, 4, 0)],
        )]);
        assert!(!table.routes[0].has_weight());
        assert_eq!(table.routes[0].pick(42, |_| true), None);
        let empty = compile(vec![route("none", &["n"], &["/"], vec![])]);
        assert!(!empty.routes[0].has_weight());
        assert_eq!(empty.routes[0].pick(42, |_| true), None);
    }

    #[test]
    fn local_backends_take_their_revisions_share_and_the_split_is_kept() {
        // Revision 1: 90% over three hosts, one of them this one;
        // revision 2: 10%, none here.
        let table = compile(vec![route(
            "web",
            &["w"],
            &["/"],
            vec![
                backend("r1-local", "local", 1, 1, 300_000),
                backend("r1-far-1", "far1", 1, 2, 300_000),
                backend("r1-far-2", "far2", 1, 3, 300_000),
                backend("r2-far", "far1", 2, 4, 100_000),
                backend("r1-local-draining", "local", 1, 5, 0),
            ],
        )]);
        let route = &table.routes[0];
        let n = 20_000;
        let counts = draws(route, n, |_| true);
        assert_eq!(
            counts.keys().collect::<BTreeSet<_>>(),
            BTreeSet::from([&"r1-local".to_owned(), &"r2-far".to_owned()])
        );
        assert!(near(counts["r1-local"], n, 900_000), "{counts:?}");
        assert!(near(counts["r2-far"], n, 100_000), "{counts:?}");

        // The local backend ejected: its revision goes to the other hosts,
        // the split stays.
        let counts = draws(route, n, |b| b.allocation != "r1-local");
        assert!(near(counts["r1-far-1"], n, 450_000), "{counts:?}");
        assert!(near(counts["r1-far-2"], n, 450_000), "{counts:?}");
        assert!(near(counts["r2-far"], n, 100_000), "{counts:?}");
    }

    #[test]
    fn unusable_backends_are_skipped_and_the_rest_renormalised() {
        let table = compile(vec![route(
            "web",
            &["w"],
            &["/"],
            vec![
                backend("a", "h1", 1, 1, 500_000),
                backend("b", "h2", 1, 2, 250_000),
                backend("c", "h3", 2, 3, 250_000),
            ],
        )]);
        let route = &table.routes[0];
        let n = 20_000;
        // `a` ejected: its revision's share goes to `b`.
        let counts = draws(route, n, |b| b.allocation != "a");
        assert!(near(counts["b"], n, 750_000), "{counts:?}");
        assert!(near(counts["c"], n, 250_000), "{counts:?}");
        // Revision 2 gone entirely: revision 1 takes everything.
        let counts = draws(route, n, |b| b.allocation != "c");
        assert!(near(counts["a"], n, 666_667), "{counts:?}");
        assert!(near(counts["b"], n, 333_333), "{counts:?}");
        // Retrying: tried backends are excluded, until nothing is left.
        let tried = ["a", "b"];
        let counts = draws(route, 100, |b| !tried.contains(&b.allocation.as_str()));
        assert_eq!(
            counts.into_iter().collect::<Vec<_>>(),
            [("c".to_owned(), 100)]
        );
        assert_eq!(route.pick(1, |_| false), None);
    }

    #[test]
    fn revisions_get_one_slot_per_service_and_revision() {
        let table = compile(vec![
            route(
                "web",
                &["w"],
                &["/"],
                vec![
                    backend("a", "h", 1, 1, 1),
                    backend("b", "h", 2, 2, 1),
                    backend("c", "h", 1, 3, 1),
                ],
            ),
            route("api", &["a"], &["/"], vec![backend("d", "h", 1, 4, 1)]),
        ]);
        assert_eq!(
            table.revisions,
            [
                ("web".to_owned(), 1),
                ("web".to_owned(), 2),
                ("api".to_owned(), 1)
            ]
        );
        let groups = &table.routes[0].revisions;
        assert_eq!(
            (groups[0].slot, groups[0].backends.len(), groups[0].share),
            (0, 2, 2)
        );
        assert_eq!((groups[1].slot, groups[1].share), (1, 1));
        assert_eq!(table.routes[1].revisions[0].slot, 2);
        assert_eq!(table.addresses().count(), 4);
        assert_eq!(table.version, 7);
    }

    /// The boundary this module promises: decisions only, no runtime, no
    /// sockets, no clock of its own.
    #[test]
    fn the_decisions_do_no_io() {
        crate::purity::assert_avoids(
            "routes.rs",
            include_str!("routes.rs"),
            crate::purity::INGRESS_IO,
        );
    }
}
