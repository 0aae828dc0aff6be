//! From stored facts to the routing decision's inputs, and from its output
//! to what an ingress receives: allocations as [`Endpoint`]s, a spec's
//! regions as a [`RegionalPolicy`], and one region's decision as a
//! `pb::Route`. Pure.

use super::table::{Endpoint, RegionRoute, RegionalPolicy, RevisionSplit};
use crate::deploy::controller::{ReportedStatus, RoutedService, observed_health};
use crate::deploy::model::{RouteRegions, RouteTls};
use crate::deploy::rollout::Health;
use crate::fleet::HostRegion;
use argosy_proto::v1 as pb;
use std::collections::HashMap;

/// The regional policy a spec's `route.regions` means.
pub fn regional_policy(regions: &RouteRegions) -> RegionalPolicy {
    match regions {
        RouteRegions::Nearest => RegionalPolicy::Nearest,
        RouteRegions::Primary { primary, failover } => RegionalPolicy::Primary {
            primary: primary.clone(),
            failover: failover.clone(),
        },
        RouteRegions::Weighted(weights) => RegionalPolicy::Weighted(weights.clone()),
    }
}

/// `nearest`, `primary eu-west, failover us-east`, `weights eu-west=3 us-east=1`.
pub fn describe_regions(regions: &RouteRegions) -> String {
    match regions {
        RouteRegions::Nearest => "nearest".to_owned(),
        RouteRegions::Primary { primary, failover } if failover.is_empty() => {
            format!("primary {primary}, no failover")
        }
        RouteRegions::Primary { primary, failover } => {
            format!("primary {primary}, failover {}", failover.join(", "))
        }
        RouteRegions::Weighted(weights) => {
            let parts: Vec<String> = weights.iter().map(|(r, w)| format!("{r}={w}")).collect();
            format!("weights {}", parts.join(" "))
        }
    }
}

/// `none`, `self-signed`, or `secret web/tls@3`.
pub fn describe_tls(service: &RoutedService) -> String {
    match (&service.route.tls, &service.certificate) {
        (None, _) => "none".to_owned(),
        (Some(RouteTls::SelfSigned), _) => "self-signed".to_owned(),
        (Some(RouteTls::Certificate(_)), Some(resolved)) => format!("secret {resolved}"),
        (Some(RouteTls::Certificate(secret)), None) => format!("secret {secret} (unresolved)"),
    }
}

/// The service's placed allocations that have reported a route address,
/// as endpoints. An allocation counts as healthy when its agent reports it
/// healthy and the host is online; one told to stop is draining.
pub fn endpoints(service: &RoutedService, hosts: &HashMap<&str, &HostRegion>) -> Vec<Endpoint> {
    service
        .allocations
        .iter()
        .filter_map(|row| {
            let host = hosts.get(row.host_id.as_deref()?)?;
            let status: ReportedStatus = serde_json::from_str(&row.status_json).ok()?;
            if status.route_address.is_empty() {
                return None;
            }
            let healthy = matches!(observed_health(row, &status), Health::Healthy { .. });
            Some(Endpoint {
                allocation: row.id.clone(),
                host: host.host_id.clone(),
                region: host.region.clone(),
                revision: u64::try_from(row.revision).unwrap_or(0),
                address: status.route_address,
                healthy: healthy && host.online,
                draining: !row.desired_run,
            })
        })
        .collect()
}

/// The allocations that take requests (healthy, not draining, of a
/// revision the split sends to) but that `decided` does not list: the
/// standbys an ingress falls back to when no listed backend answers.
pub fn standbys<'e>(
    endpoints: &'e [Endpoint],
    split: &RevisionSplit,
    decided: &RegionRoute,
) -> Vec<&'e Endpoint> {
    endpoints
        .iter()
        .filter(|e| e.healthy && !e.draining && split.get(&e.revision).is_some_and(|w| *w > 0))
        .filter(|e| {
            !decided
                .backends
                .iter()
                .any(|b| b.allocation == e.allocation)
        })
        .collect()
}

/// What an ingress in `decided.region` applies for `service`, with
/// `standby` allocations listed at weight 0.
pub fn route_message(
    service: &RoutedService,
    decided: &RegionRoute,
    standby: &[&Endpoint],
) -> pb::Route {
    let tls = service.route.tls.as_ref().map(|tls| pb::RouteTls {
        source: Some(match (tls, &service.certificate) {
            (RouteTls::SelfSigned, _) => pb::route_tls::Source::SelfSigned(true),
            (RouteTls::Certificate(_), Some(resolved)) => {
                pb::route_tls::Source::Certificate(pb::SecretRef {
                    name: resolved.name.clone(),
                    version: resolved.version,
                })
            }
            // Never resolved (apply refuses a missing secret): no
            // certificate to serve, so the agent serves this route on
            // plain HTTP only.
            (RouteTls::Certificate(secret), None) => {
                pb::route_tls::Source::Certificate(pb::SecretRef {
                    name: secret.name.clone(),
                    version: 0,
                })
            }
        }),
    });
    pb::Route {
        service: service.name.clone(),
        hostnames: service.route.hostnames.clone(),
        paths: service.route.paths.clone(),
        tls,
        backends: decided
            .backends
            .iter()
            .map(|b| pb::RouteBackend {
                allocation: b.allocation.clone(),
                host: b.host.clone(),
                region: b.region.clone(),
                revision: b.revision,
                address: b.address.clone(),
                weight: b.weight,
                standby: false,
            })
            .chain(standby.iter().map(|e| pb::RouteBackend {
                allocation: e.allocation.clone(),
                host: e.host.clone(),
                region: e.region.clone(),
                revision: e.revision,
                address: e.address.clone(),
                weight: 0,
                standby: true,
            }))
            .collect(),
        explanation: decided.explanation.clone(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::deploy::model::{DEFAULT_DRAIN, Route, SecretRef, SecretVersion};
    use crate::deploy::secret_refs::VersionedSecret;
    use crate::routing::table::Backend;
    use crate::store::AllocationRow;

    /// An allocation of `web` rev 7 as stored, reported with `address`.
    pub(crate) fn row(
        id: &str,
        host: Option<&str>,
        health: &str,
        address: &str,
        run: bool,
    ) -> AllocationRow {
        let status = ReportedStatus {
            route_address: address.to_owned(),
            healthy_since_ms: 5,
            ..ReportedStatus::default()
        };
        AllocationRow {
            id: id.to_owned(),
            service: "web".to_owned(),
            revision: 7,
            deployment_id: None,
            host_id: host.map(str::to_owned),
            desired_run: run,
            state: "running".to_owned(),
            health: health.to_owned(),
            status_json: serde_json::to_string(&status).unwrap(),
            pending_reason: None,
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    /// The routed service `web` at `web.example.com`, nearest regions.
    pub(crate) fn service(tls: Option<RouteTls>, allocations: Vec<AllocationRow>) -> RoutedService {
        RoutedService {
            name: "web".to_owned(),
            route: Route {
                hostnames: vec!["web.example.com".to_owned()],
                paths: vec!["/".to_owned()],
                port: 8080,
                tls,
                regions: RouteRegions::Nearest,
                drain: DEFAULT_DRAIN,
            },
            certificate: None,
            placement_regions: vec![],
            stopped: false,
            allocations,
            rollout: None,
        }
    }

    fn region(host: &str, region: &str, online: bool) -> HostRegion {
        HostRegion {
            host_id: host.to_owned(),
            region: region.to_owned(),
            online,
            ingress: None,
        }
    }

    #[test]
    fn endpoints_carry_health_host_state_and_draining() {
        let web = service(
            None,
            vec![
                row("a1", Some("h1"), "healthy", "10.0.0.1:32001", true),
                row("a2", Some("h2"), "healthy", "10.0.0.2:32002", true),
                row("a3", Some("h1"), "unhealthy", "10.0.0.1:32003", true),
                row("a4", Some("h1"), "healthy", "10.0.0.1:32004", false),
                // Not placed, not reported yet, or on an unknown host: left out.
                row("a5", None, "healthy", "10.0.0.9:1", true),
                row("a6", Some("h1"), "healthy", "", true),
                row("a7", Some("h9"), "healthy", "10.0.0.9:2", true),
            ],
        );
        let h1 = region("h1", "eu-west", true);
        let h2 = region("h2", "us-east", false);
        let hosts = HashMap::from([("h1", &h1), ("h2", &h2)]);
        let got: Vec<_> = endpoints(&web, &hosts)
            .into_iter()
            .map(|e| (e.allocation, e.region, e.address, e.healthy, e.draining))
            .collect();
        let want = [
            ("a1", "eu-west", "10.0.0.1:32001", true, false),
            ("a2", "us-east", "10.0.0.2:32002", false, false),
            ("a3", "eu-west", "10.0.0.1:32003", false, false),
            ("a4", "eu-west", "10.0.0.1:32004", true, true),
        ]
        .map(|(a, r, ad, h, d)| (a.to_owned(), r.to_owned(), ad.to_owned(), h, d));
        assert_eq!(got, want);
    }

    #[test]
    fn the_route_message_carries_backends_tls_and_the_explanation() {
        let decided = RegionRoute {
            region: "eu-west".to_owned(),
            backends: vec![Backend {
                allocation: "a1".to_owned(),
                host: "h1".to_owned(),
                region: "eu-west".to_owned(),
                revision: 7,
                address: "10.0.0.1:32001".to_owned(),
                weight: 1_000_000,
            }],
            explanation: "eu-west: 100 % rev 7".to_owned(),
        };
        let mut web = service(
            Some(RouteTls::Certificate(SecretRef {
                name: "web/tls".to_owned(),
                version: SecretVersion::Latest,
            })),
            vec![],
        );
        web.certificate = Some(VersionedSecret::new("web/tls", 3));
        let message = route_message(&web, &decided, &[]);
        assert_eq!(message.hostnames, ["web.example.com"]);
        assert_eq!(message.paths, ["/"]);
        assert_eq!(message.explanation, "eu-west: 100 % rev 7");
        assert_eq!(message.backends.len(), 1);
        assert_eq!(message.backends[0].weight, 1_000_000);
        assert_eq!(message.backends[0].address, "10.0.0.1:32001");
        assert_eq!(
            message.tls.unwrap().source,
            Some(pb::route_tls::Source::Certificate(pb::SecretRef {
                name: "web/tls".to_owned(),
                version: 3
            }))
        );
        let plain = route_message(&service(None, vec![]), &decided, &[]);
        assert_eq!(plain.tls, None);
        let dev = route_message(&service(Some(RouteTls::SelfSigned), vec![]), &decided, &[]);
        assert_eq!(
            dev.tls.unwrap().source,
            Some(pb::route_tls::Source::SelfSigned(true))
        );
    }

    #[test]
    fn regions_and_tls_read_as_people_write_them() {
        assert_eq!(describe_regions(&RouteRegions::Nearest), "nearest");
        let primary = |failover: &[&str]| RouteRegions::Primary {
            primary: "eu-west".to_owned(),
            failover: failover.iter().map(|r| (*r).to_owned()).collect(),
        };
        assert_eq!(
            describe_regions(&primary(&["us-east", "ap-south"])),
            "primary eu-west, failover us-east, ap-south"
        );
        assert_eq!(
            describe_regions(&primary(&[])),
            "primary eu-west, no failover"
        );
        let weights = std::collections::BTreeMap::from([
            ("us-east".to_owned(), 1),
            ("eu-west".to_owned(), 3),
        ]);
        assert_eq!(
            describe_regions(&RouteRegions::Weighted(weights)),
            "weights eu-west=3 us-east=1"
        );
        let secret = RouteTls::Certificate(SecretRef {
            name: "web/tls".to_owned(),
            version: SecretVersion::Latest,
        });
        let mut web = service(Some(secret), vec![]);
        assert_eq!(describe_tls(&web), "secret web/tls (unresolved)");
        web.certificate = Some(VersionedSecret::new("web/tls", 3));
        assert_eq!(describe_tls(&web), "secret web/tls@3");
        assert_eq!(describe_tls(&service(None, vec![])), "none");
        assert_eq!(
            describe_tls(&service(Some(RouteTls::SelfSigned), vec![])),
            "self-signed"
        );
    }

    #[test]
    fn healthy_allocations_the_decision_leaves_out_are_standbys() {
        let endpoint =
            |allocation: &str, region: &str, revision: u64, healthy: bool, draining: bool| {
                Endpoint {
                    allocation: allocation.to_owned(),
                    host: format!("h-{allocation}"),
                    region: region.to_owned(),
                    revision,
                    address: format!("10.0.0.1:{}", 30_000 + revision),
                    healthy,
                    draining,
                }
            };
        let endpoints = [
            endpoint("a1", "eu-west", 7, true, false),
            endpoint("a2", "us-east", 7, true, false),
            endpoint("a3", "us-east", 7, false, false),
            endpoint("a4", "us-east", 7, true, true),
            endpoint("a5", "us-east", 8, true, false),
        ];
        let decided = RegionRoute {
            region: "eu-west".to_owned(),
            backends: vec![Backend {
                allocation: "a1".to_owned(),
                host: "h-a1".to_owned(),
                region: "eu-west".to_owned(),
                revision: 7,
                address: "10.0.0.1:30007".to_owned(),
                weight: 1_000_000,
            }],
            explanation: String::new(),
        };
        // Revision 8 has no traffic in the split: never a standby.
        let split = std::collections::BTreeMap::from([(7, 1), (8, 0)]);
        let standby = standbys(&endpoints, &split, &decided);
        let names: Vec<&str> = standby.iter().map(|e| e.allocation.as_str()).collect();
        assert_eq!(names, ["a2"]);
        let message = route_message(&service(None, vec![]), &decided, &standby);
        let listed: Vec<(&str, u32, bool)> = message
            .backends
            .iter()
            .map(|b| (b.allocation.as_str(), b.weight, b.standby))
            .collect();
        assert_eq!(listed, [("a1", 1_000_000, false), ("a2", 0, true)]);
    }

    #[test]
    fn regions_map_one_to_one() {
        assert_eq!(
            regional_policy(&RouteRegions::Nearest),
            RegionalPolicy::Nearest
        );
        let primary = RouteRegions::Primary {
            primary: "eu-west".to_owned(),
            failover: vec!["us-east".to_owned()],
        };
        assert_eq!(
            regional_policy(&primary),
            RegionalPolicy::Primary {
                primary: "eu-west".to_owned(),
                failover: vec!["us-east".to_owned()]
            }
        );
        let weights = std::collections::BTreeMap::from([("eu-west".to_owned(), 3)]);
        assert_eq!(
            regional_policy(&RouteRegions::Weighted(weights.clone())),
            RegionalPolicy::Weighted(weights)
        );
    }
}
