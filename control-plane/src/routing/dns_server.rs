//! The DNS listener (`--dns-listen`, UDP): decodes each query with
//! hickory-proto, asks the pure `dns::reply` over the table the router
//! keeps current, and encodes the authoritative answer (A/AAAA with a short
//! TTL, NXDOMAIN with the zone's SOA, REFUSED outside the zone).

use super::dns::{Asked, DnsTable, RegionRule, Reply, TTL_SECONDS, client_region, reply};
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::net::UdpSocket;

/// What the listener answers for.
#[derive(Debug, Clone)]
pub struct DnsSettings {
    /// The delegated zone, lowercase, without the final dot.
    pub zone: String,
    pub regions: Vec<RegionRule>,
}

/// Answers queries on `socket` until `shutdown`, from `table()`.
pub async fn serve(
    socket: UdpSocket,
    settings: DnsSettings,
    table: impl Fn() -> Arc<DnsTable>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut buffer = vec![0u8; 4096];
    loop {
        let (len, peer) = tokio::select! {
            received = socket.recv_from(&mut buffer) => match received {
                Ok(received) => received,
                Err(error) => {
                    tracing::warn!(%error, "DNS receive failed");
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let Some(answer) = answer(&buffer[..len], peer, &settings, &table()) else {
            continue;
        };
        if let Err(error) = socket.send_to(&answer, peer).await {
            tracing::debug!(%error, %peer, "DNS answer not sent");
        }
    }
}

/// The encoded answer to one datagram; `None` for what is not worth an
/// answer (not a query, or too short to carry an id).
fn answer(
    datagram: &[u8],
    peer: SocketAddr,
    settings: &DnsSettings,
    table: &DnsTable,
) -> Option<Vec<u8>> {
    let request = match Message::from_vec(datagram) {
        Ok(request) => request,
        Err(_) if datagram.len() >= 2 => {
            let id = u16::from_be_bytes([datagram[0], datagram[1]]);
            return Message::error_msg(id, OpCode::Query, ResponseCode::FormErr)
                .to_vec()
                .ok();
        }
        Err(_) => return None,
    };
    if request.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.queries = request.queries.clone();
    let [query] = request.queries.as_slice() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return response.to_vec().ok();
    };
    if request.metadata.op_code != OpCode::Query {
        response.metadata.response_code = ResponseCode::NotImp;
        return response.to_vec().ok();
    }
    let asked = match query.query_type() {
        RecordType::A => Asked::A,
        RecordType::AAAA => Asked::Aaaa,
        _ => Asked::Other,
    };
    let region = client_region(&settings.regions, peer.ip());
    let name = query.name().to_ascii();
    match reply(table, &settings.zone, &name, asked, region) {
        Reply::Refused => response.metadata.response_code = ResponseCode::Refused,
        Reply::NoSuchName => {
            response.metadata.authoritative = true;
            response.metadata.response_code = ResponseCode::NXDomain;
            response.add_authority(soa(&settings.zone)?);
        }
        Reply::Addresses(addresses) => {
            response.metadata.authoritative = true;
            if addresses.is_empty() {
                response.add_authority(soa(&settings.zone)?);
            }
            for address in addresses {
                let data = match address {
                    IpAddr::V4(v4) => RData::A(A(v4)),
                    IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
                };
                response.add_answer(Record::from_rdata(query.name().clone(), TTL_SECONDS, data));
            }
        }
    }
    response.to_vec().ok()
}

/// The zone's SOA (negative answers are cached for the TTL).
fn soa(zone: &str) -> Option<Record> {
    let apex = Name::from_ascii(format!("{zone}.")).ok()?;
    let primary = Name::from_ascii(format!("ns.{zone}.")).ok()?;
    let admin = Name::from_ascii(format!("hostmaster.{zone}.")).ok()?;
    let data = SOA::new(primary, admin, 1, 60, 30, 3600, TTL_SECONDS);
    Some(Record::from_rdata(apex, TTL_SECONDS, RData::SOA(data)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::dns::NameAnswer;
    use hickory_proto::op::Query;
    use std::collections::BTreeMap;

    fn settings() -> DnsSettings {
        DnsSettings {
            zone: "apps.test".to_owned(),
            regions: vec!["127.0.0.3/32=us-east".parse().unwrap()],
        }
    }

    fn table() -> DnsTable {
        let answer = NameAnswer {
            by_client_region: BTreeMap::from([(
                "us-east".to_owned(),
                vec!["127.0.0.3".parse().unwrap()],
            )]),
            anywhere: vec!["127.0.0.1".parse().unwrap()],
        };
        DnsTable {
            names: BTreeMap::from([("web.apps.test".to_owned(), answer)]),
        }
    }

    fn ask(name: &str, kind: RecordType, from: &str) -> Message {
        let mut query = Message::query();
        query.metadata.recursion_desired = true;
        query.add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
        let peer: SocketAddr = format!("{from}:5353").parse().unwrap();
        let bytes = answer(&query.to_vec().unwrap(), peer, &settings(), &table()).unwrap();
        let response = Message::from_vec(&bytes).unwrap();
        assert_eq!(response.metadata.id, query.metadata.id);
        assert_eq!(response.metadata.message_type, MessageType::Response);
        response
    }

    fn addresses(response: &Message) -> Vec<String> {
        response
            .answers
            .iter()
            .map(|r| match &r.data {
                RData::A(a) => a.0.to_string(),
                RData::AAAA(a) => a.0.to_string(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn answers_carry_the_clients_regional_addresses_with_a_short_ttl() {
        let from_anywhere = ask("web.apps.test.", RecordType::A, "127.0.0.1");
        assert!(from_anywhere.metadata.authoritative);
        assert_eq!(from_anywhere.metadata.response_code, ResponseCode::NoError);
        assert_eq!(addresses(&from_anywhere), ["127.0.0.1"]);
        assert_eq!(from_anywhere.answers[0].ttl, TTL_SECONDS);
        let from_us = ask("WEB.apps.test.", RecordType::A, "127.0.0.3");
        assert_eq!(addresses(&from_us), ["127.0.0.3"]);
        let none = ask("web.apps.test.", RecordType::AAAA, "127.0.0.1");
        assert_eq!(none.metadata.response_code, ResponseCode::NoError);
        assert!(none.answers.is_empty());
        assert_eq!(none.authorities.len(), 1, "NODATA carries the SOA");
    }

    #[test]
    fn unknown_names_and_other_zones() {
        let missing = ask("nope.apps.test.", RecordType::A, "127.0.0.1");
        assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(missing.authorities[0].record_type(), RecordType::SOA);
        let elsewhere = ask("example.org.", RecordType::A, "127.0.0.1");
        assert_eq!(elsewhere.metadata.response_code, ResponseCode::Refused);
        assert!(!elsewhere.metadata.authoritative);
    }

    #[test]
    fn garbage_gets_a_format_error_or_nothing() {
        let peer: SocketAddr = "127.0.0.1:5353".parse().unwrap();
        let bytes = answer(&[0x12, 0x34, 0xff], peer, &settings(), &table()).unwrap();
        let response = Message::from_vec(&bytes).unwrap();
        assert_eq!(response.metadata.id, 0x1234);
        assert_eq!(response.metadata.response_code, ResponseCode::FormErr);
        assert_eq!(answer(&[0x12], peer, &settings(), &table()), None);
    }
}
