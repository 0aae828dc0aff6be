//! Round trips to other regions: the routing table names a few ingresses
//! of every other region (`probes`); the agent times a TCP handshake with
//! each every few seconds and reports the fastest per region
//! (`LatencyReport`), which `nearest` routes follow. The decisions here are
//! pure; the timing loop is in the module above.

use argosy_proto::v1::{LatencyReport, RegionRoundTrip, RoutingTable};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// The targets of `table`, `(region, address)`; unparsable addresses are
/// skipped.
pub fn targets(table: &RoutingTable) -> Vec<(String, SocketAddr)> {
    table
        .probes
        .iter()
        .filter_map(|p| Some((p.region.clone(), p.address.parse().ok()?)))
        .collect()
}

/// The fastest handshake per region among `measured` (`None`: no answer
/// in time); a region no target answered for is left out.
pub fn fastest_per_region(measured: &[(String, Option<Duration>)]) -> LatencyReport {
    let mut fastest: BTreeMap<&str, Duration> = BTreeMap::new();
    for (region, took) in measured {
        if let Some(took) = took {
            fastest
                .entry(region)
                .and_modify(|best| *best = (*best).min(*took))
                .or_insert(*took);
        }
    }
    LatencyReport {
        regions: fastest
            .into_iter()
            .map(|(region, took)| RegionRoundTrip {
                region: region.to_owned(),
                rtt_micros: u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argosy_proto::v1::ProbeTarget;

    #[test]
    fn targets_come_from_the_table() {
        let table = RoutingTable {
            probes: vec![
                ProbeTarget {
                    region: "us-east".into(),
                    host: "h2".into(),
                    address: "10.2.0.1:7480".into(),
                },
                ProbeTarget {
                    region: "us-east".into(),
                    host: "h3".into(),
                    address: "not an address".into(),
                },
            ],
            ..RoutingTable::default()
        };
        assert_eq!(
            targets(&table),
            [("us-east".to_owned(), "10.2.0.1:7480".parse().unwrap())]
        );
    }

    #[test]
    fn the_fastest_answer_per_region_counts() {
        let ms = |n| Some(Duration::from_millis(n));
        let report = fastest_per_region(&[
            ("us-east".into(), ms(80)),
            ("us-east".into(), ms(70)),
            ("us-east".into(), None),
            ("ap-south".into(), None),
            ("eu-north".into(), Some(Duration::from_nanos(10))),
        ]);
        let got: Vec<(String, u64)> = report
            .regions
            .into_iter()
            .map(|r| (r.region, r.rtt_micros))
            .collect();
        assert_eq!(
            got,
            [("eu-north".to_owned(), 1), ("us-east".to_owned(), 70_000)]
        );
    }
}
