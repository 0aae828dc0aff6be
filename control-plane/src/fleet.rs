//! The live picture of the fleet: every host with its inventory, latest
//! sample, connection and status, plus the stream of changes `WatchHosts`
//! serves. Status is decided by the pure [`host_status`]; this registry only
//! holds state and publishes transitions.

use crate::store::HostRow;
use argosy_proto::v1::{self as pb, ControlMessage, HostEvent, control_message::Body};
use prost::Message;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use tokio::sync::{Notify, broadcast, mpsc};
use tonic::Status;

/// Where a host stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostState {
    Online,
    Offline,
    Revoked,
}

impl HostState {
    fn wire(self) -> pb::HostStatus {
        match self {
            HostState::Online => pb::HostStatus::Online,
            HostState::Offline => pb::HostStatus::Offline,
            HostState::Revoked => pb::HostStatus::Revoked,
        }
    }
}

/// Decides a host's status: revoked wins; a host is online while its stream
/// is open and it has been heard from within `offline_after` intervals.
pub fn host_status(
    revoked: bool,
    connected: bool,
    last_seen_ms: Option<i64>,
    interval_seconds: u32,
    offline_after_intervals: u32,
    now_ms: i64,
) -> HostState {
    if revoked {
        return HostState::Revoked;
    }
    let Some(last_seen) = last_seen_ms else {
        return HostState::Offline;
    };
    let window =
        i64::from(interval_seconds.max(1)) * 1000 * i64::from(offline_after_intervals.max(1));
    if connected && now_ms - last_seen <= window {
        HostState::Online
    } else {
        HostState::Offline
    }
}

/// The control plane's half of an open agent session.
#[derive(Clone)]
pub struct SessionHandle {
    pub id: u64,
    pub outbound: mpsc::Sender<Result<ControlMessage, Status>>,
    pub closed: Arc<Notify>,
}

impl SessionHandle {
    /// Tells the agent why and ends the session.
    pub fn close(&self, reason: &str, status: Status) {
        let _ = self.outbound.try_send(Ok(ControlMessage {
            body: Some(Body::Disconnect(pb::Disconnect {
                reason: reason.to_owned(),
            })),
        }));
        let _ = self.outbound.try_send(Err(status));
        self.closed.notify_one();
    }
}

struct Entry {
    row: HostRow,
    runtime_error: String,
    inventory: Option<pb::Inventory>,
    latest: Option<pb::MetricSample>,
    session: Option<SessionHandle>,
    state: HostState,
}

/// Counts by state, for `/metrics`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StateCounts {
    pub online: usize,
    pub offline: usize,
    pub revoked: usize,
}

/// The in-memory registry of hosts.
pub struct Fleet {
    hosts: RwLock<HashMap<String, Entry>>,
    events: broadcast::Sender<HostEvent>,
    offline_after_intervals: u32,
}

fn labels_match(have: &BTreeMap<String, String>, want: &HashMap<String, String>) -> bool {
    want.iter().all(|(k, v)| have.get(k) == Some(v))
}

/// Where a host is and whether it is online ([`Fleet::regions`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRegion {
    pub host_id: String,
    pub region: String,
    pub online: bool,
    /// Where its ingress listens, when it does: the advertise address and
    /// the plain HTTP port (else the HTTPS one).
    pub ingress: Option<std::net::SocketAddr>,
}

impl Fleet {
    /// A registry holding the stored hosts, all offline until they connect.
    pub fn new(rows: Vec<HostRow>, offline_after_intervals: u32) -> Self {
        let hosts = rows
            .into_iter()
            .map(|row| {
                let inventory = pb::Inventory::decode(row.inventory.as_slice()).ok();
                let state = if row.revoked_at_ms.is_some() {
                    HostState::Revoked
                } else {
                    HostState::Offline
                };
                (
                    row.id.clone(),
                    Entry {
                        row,
                        runtime_error: String::new(),
                        inventory,
                        latest: None,
                        session: None,
                        state,
                    },
                )
            })
            .collect();
        Self {
            hosts: RwLock::new(hosts),
            events: broadcast::channel(4096).0,
            offline_after_intervals,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Entry>> {
        self.hosts.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Entry>> {
        self.hosts.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Subscribes to host changes.
    pub fn subscribe(&self) -> broadcast::Receiver<HostEvent> {
        self.events.subscribe()
    }

    fn publish(&self, kind: pb::host_event::Kind, host: pb::Host, now_ms: i64) {
        let _ = self.events.send(HostEvent {
            kind: kind as i32,
            host: Some(host),
            at_ms: now_ms,
        });
    }

    fn to_wire(entry: &Entry) -> pb::Host {
        let row = &entry.row;
        pb::Host {
            id: row.id.clone(),
            hostname: row.hostname.clone(),
            region: row.region.clone(),
            labels: row.labels.clone().into_iter().collect(),
            status: entry.state.wire() as i32,
            last_seen_ms: row.last_seen_ms.unwrap_or(0),
            enrolled_at_ms: row.enrolled_at_ms,
            inventory: entry.inventory.clone(),
            latest: entry.latest.clone(),
            certificate_not_after_ms: row.cert_not_after_ms,
            interval_seconds: row.interval_seconds,
            runtime_error: entry.runtime_error.clone(),
        }
    }

    /// A newly enrolled host.
    pub fn enrolled(&self, row: HostRow, now_ms: i64) {
        let inventory = pb::Inventory::decode(row.inventory.as_slice()).ok();
        let entry = Entry {
            row,
            runtime_error: String::new(),
            inventory,
            latest: None,
            session: None,
            state: HostState::Offline,
        };
        let wire = Self::to_wire(&entry);
        self.write().insert(entry.row.id.clone(), entry);
        self.publish(pb::host_event::Kind::Enrolled, wire, now_ms);
    }

    /// A host opened a session. Returns the session it replaces, which the
    /// caller closes.
    pub fn connected(
        &self,
        host_id: &str,
        session: SessionHandle,
        inventory: pb::Inventory,
        interval_seconds: u32,
        now_ms: i64,
    ) -> Option<SessionHandle> {
        let (previous, wire) = {
            let mut hosts = self.write();
            let entry = hosts.get_mut(host_id)?;
            if !inventory.hostname.is_empty() {
                entry.row.hostname = inventory.hostname.clone();
            }
            entry.row.inventory = inventory.encode_to_vec();
            entry.row.interval_seconds = interval_seconds;
            entry.row.last_seen_ms = Some(now_ms);
            entry.inventory = Some(inventory);
            entry.state = HostState::Online;
            let previous = entry.session.replace(session);
            (previous, Self::to_wire(entry))
        };
        self.publish(pb::host_event::Kind::Online, wire, now_ms);
        previous
    }

    /// A session ended. Ignored if a newer session already replaced it.
    pub fn disconnected(&self, host_id: &str, session_id: u64, now_ms: i64) {
        let wire = {
            let mut hosts = self.write();
            let Some(entry) = hosts.get_mut(host_id) else {
                return;
            };
            if entry.session.as_ref().map(|s| s.id) != Some(session_id) {
                return;
            }
            entry.session = None;
            if entry.state != HostState::Online {
                return;
            }
            entry.state = HostState::Offline;
            Self::to_wire(entry)
        };
        self.publish(pb::host_event::Kind::Offline, wire, now_ms);
    }

    /// A sample arrived and was stored.
    pub fn sampled(&self, host_id: &str, sample: pb::MetricSample, now_ms: i64) {
        let (wire, came_back) = {
            let mut hosts = self.write();
            let Some(entry) = hosts.get_mut(host_id) else {
                return;
            };
            entry.latest = Some(sample);
            entry.row.last_seen_ms = Some(now_ms);
            let came_back = entry.state == HostState::Offline && entry.session.is_some();
            if came_back {
                entry.state = HostState::Online;
            }
            (Self::to_wire(entry), came_back)
        };
        if came_back {
            self.publish(pb::host_event::Kind::Online, wire.clone(), now_ms);
        }
        if self.events.receiver_count() > 0 {
            self.publish(pb::host_event::Kind::Metrics, wire, now_ms);
        }
    }

    /// Records what the host's agent says about its container runtime
    /// (empty: healthy); publishes an inventory event when it changes.
    pub fn runtime_reported(&self, host_id: &str, error: &str, now_ms: i64) {
        let changed = {
            let mut hosts = self.write();
            let Some(entry) = hosts.get_mut(host_id) else {
                return;
            };
            if entry.runtime_error == error {
                None
            } else {
                entry.runtime_error = error.to_owned();
                Some(Self::to_wire(entry))
            }
        };
        if let Some(wire) = changed {
            self.publish(pb::host_event::Kind::Inventory, wire, now_ms);
        }
    }

    /// Any message from the host proves it is alive.
    pub fn heard_from(&self, host_id: &str, now_ms: i64) {
        if let Some(entry) = self.write().get_mut(host_id) {
            entry.row.last_seen_ms = Some(now_ms);
        }
    }

    /// Marks a host revoked and closes its session.
    pub fn revoked(&self, host_id: &str, now_ms: i64) -> Option<pb::Host> {
        let (session, wire) = {
            let mut hosts = self.write();
            let entry = hosts.get_mut(host_id)?;
            entry.row.revoked_at_ms = Some(now_ms);
            entry.state = HostState::Revoked;
            (entry.session.take(), Self::to_wire(entry))
        };
        if let Some(session) = session {
            let reason = format!(
                "host {host_id} was revoked by an operator; re-enroll it with a new join token"
            );
            session.close(&reason, Status::permission_denied(reason.clone()));
        }
        self.publish(pb::host_event::Kind::Revoked, wire.clone(), now_ms);
        Some(wire)
    }

    /// Re-evaluates every host's status at `now_ms` and publishes the
    /// transitions. Returns how many hosts went offline.
    pub fn sweep(&self, now_ms: i64) -> usize {
        let mut changed = Vec::new();
        {
            let mut hosts = self.write();
            for entry in hosts.values_mut() {
                let state = host_status(
                    entry.row.revoked_at_ms.is_some(),
                    entry.session.is_some(),
                    entry.row.last_seen_ms,
                    entry.row.interval_seconds,
                    self.offline_after_intervals,
                    now_ms,
                );
                if state != entry.state {
                    entry.state = state;
                    changed.push((state, Self::to_wire(entry)));
                }
            }
        }
        let mut offline = 0;
        for (state, wire) in changed {
            let kind = match state {
                HostState::Online => pb::host_event::Kind::Online,
                HostState::Offline => {
                    offline += 1;
                    pb::host_event::Kind::Offline
                }
                HostState::Revoked => pb::host_event::Kind::Revoked,
            };
            self.publish(kind, wire, now_ms);
        }
        offline
    }

    /// Hosts in `region` (all if empty) carrying every label in `labels`,
    /// ordered by region then hostname.
    pub fn list(&self, region: &str, labels: &HashMap<String, String>) -> Vec<pb::Host> {
        let mut hosts: Vec<pb::Host> = self
            .read()
            .values()
            .filter(|e| region.is_empty() || e.row.region == region)
            .filter(|e| labels_match(&e.row.labels, labels))
            .map(Self::to_wire)
            .collect();
        hosts.sort_by(|a, b| (&a.region, &a.hostname, &a.id).cmp(&(&b.region, &b.hostname, &b.id)));
        hosts
    }

    /// Every host's region and whether it is online, without the rest of
    /// its record (routing reads this on every change).
    pub fn regions(&self) -> Vec<HostRegion> {
        self.read()
            .values()
            .filter(|e| e.state != HostState::Revoked)
            .map(|e| HostRegion {
                host_id: e.row.id.clone(),
                region: e.row.region.clone(),
                online: e.state == HostState::Online,
                ingress: e.inventory.as_ref().and_then(|i| {
                    let ip: std::net::IpAddr = i.advertise_address.parse().ok()?;
                    let port = [i.ingress_http_port, i.ingress_https_port]
                        .into_iter()
                        .find(|p| *p != 0)?;
                    Some(std::net::SocketAddr::new(ip, u16::try_from(port).ok()?))
                }),
            })
            .collect()
    }

    /// The region of a host, if it is known.
    pub fn region_of(&self, host_id: &str) -> Option<String> {
        self.read().get(host_id).map(|e| e.row.region.clone())
    }

    pub fn get(&self, host_id: &str) -> Option<pb::Host> {
        self.read().get(host_id).map(Self::to_wire)
    }

    pub fn state_counts(&self) -> StateCounts {
        let mut counts = StateCounts::default();
        for entry in self.read().values() {
            match entry.state {
                HostState::Online => counts.online += 1,
                HostState::Offline => counts.offline += 1,
                HostState::Revoked => counts.revoked += 1,
            }
        }
        counts
    }

    /// Sends a message down the host's session, if this replica holds one.
    /// Returns false when the host is not connected here or its queue is
    /// full; callers that must deliver (desired state) resend on reconnect.
    pub fn send(&self, host_id: &str, message: ControlMessage) -> bool {
        let outbound = self
            .read()
            .get(host_id)
            .and_then(|e| e.session.as_ref().map(|s| s.outbound.clone()));
        outbound.is_some_and(|tx| tx.try_send(Ok(message)).is_ok())
    }

    /// Whether this replica holds an open session for the host.
    pub fn has_session(&self, host_id: &str) -> bool {
        self.read()
            .get(host_id)
            .is_some_and(|e| e.session.is_some())
    }

    /// A new certificate was issued for the host.
    pub fn certificate_renewed(&self, host_id: &str, serial_hex: &str, not_after_ms: i64) {
        if let Some(entry) = self.write().get_mut(host_id) {
            entry.row.cert_serial = serial_hex.to_owned();
            entry.row.cert_not_after_ms = not_after_ms;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn status_table() {
        // (revoked, connected, last_seen, expected)
        let cases = [
            (true, true, Some(NOW), HostState::Revoked),
            (false, false, None, HostState::Offline),
            (false, true, None, HostState::Offline),
            (false, true, Some(NOW), HostState::Online),
            (false, true, Some(NOW - 30_000), HostState::Online),
            (false, true, Some(NOW - 30_001), HostState::Offline),
            (false, false, Some(NOW), HostState::Offline),
        ];
        for (revoked, connected, last_seen, expected) in cases {
            assert_eq!(
                host_status(revoked, connected, last_seen, 10, 3, NOW),
                expected,
                "{revoked} {connected} {last_seen:?}"
            );
        }
        // A zero interval is treated as one second, never as "always offline".
        assert_eq!(
            host_status(false, true, Some(NOW - 2_000), 0, 3, NOW),
            HostState::Online
        );
    }

    fn row(id: &str, region: &str, labels: &[(&str, &str)]) -> HostRow {
        HostRow {
            id: id.into(),
            hostname: format!("{id}.local"),
            region: region.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            enrolled_at_ms: NOW,
            last_seen_ms: None,
            inventory: Vec::new(),
            interval_seconds: 10,
            cert_serial: "01".into(),
            cert_not_after_ms: NOW + 1,
            revoked_at_ms: None,
            join_token_id: "jt".into(),
        }
    }

    fn session(
        id: u64,
    ) -> (
        SessionHandle,
        mpsc::Receiver<Result<ControlMessage, Status>>,
    ) {
        let (tx, rx) = mpsc::channel(8);
        (
            SessionHandle {
                id,
                outbound: tx,
                closed: Arc::new(Notify::new()),
            },
            rx,
        )
    }

    #[test]
    fn filters_by_region_and_labels() {
        let fleet = Fleet::new(
            vec![
                row("a", "eu-west", &[("role", "db")]),
                row("b", "eu-west", &[("role", "web")]),
                row("c", "us-east", &[("role", "db")]),
            ],
            3,
        );
        let ids = |hosts: Vec<pb::Host>| hosts.into_iter().map(|h| h.id).collect::<Vec<_>>();
        assert_eq!(ids(fleet.list("", &HashMap::new())), ["a", "b", "c"]);
        assert_eq!(ids(fleet.list("eu-west", &HashMap::new())), ["a", "b"]);
        let db = HashMap::from([("role".to_string(), "db".to_string())]);
        assert_eq!(ids(fleet.list("", &db)), ["a", "c"]);
        assert_eq!(ids(fleet.list("us-east", &db)), ["c"]);
    }

    #[test]
    fn connect_sweep_and_reconnect_publish_transitions() {
        let fleet = Fleet::new(vec![row("a", "r", &[])], 3);
        let mut events = fleet.subscribe();
        let (s1, _rx1) = session(1);
        assert!(
            fleet
                .connected("a", s1, pb::Inventory::default(), 10, NOW)
                .is_none()
        );
        assert_eq!(
            events.try_recv().unwrap().kind,
            pb::host_event::Kind::Online as i32
        );
        assert_eq!(fleet.state_counts().online, 1);
        // Silent for longer than 3 intervals: offline.
        assert_eq!(fleet.sweep(NOW + 29_000), 0);
        assert_eq!(fleet.sweep(NOW + 31_000), 1);
        assert_eq!(
            events.try_recv().unwrap().kind,
            pb::host_event::Kind::Offline as i32
        );
        // A sample brings it back.
        fleet.sampled("a", pb::MetricSample::default(), NOW + 32_000);
        assert_eq!(
            events.try_recv().unwrap().kind,
            pb::host_event::Kind::Online as i32
        );
        assert_eq!(
            fleet.get("a").unwrap().status,
            pb::HostStatus::Online as i32
        );
    }

    #[test]
    fn a_newer_session_replaces_the_old_one_and_stale_disconnects_are_ignored() {
        let fleet = Fleet::new(vec![row("a", "r", &[])], 3);
        let (s1, _rx1) = session(1);
        let (s2, _rx2) = session(2);
        fleet.connected("a", s1, pb::Inventory::default(), 10, NOW);
        let replaced = fleet.connected("a", s2, pb::Inventory::default(), 10, NOW);
        assert_eq!(replaced.map(|s| s.id), Some(1));
        fleet.disconnected("a", 1, NOW);
        assert_eq!(
            fleet.get("a").unwrap().status,
            pb::HostStatus::Online as i32
        );
        fleet.disconnected("a", 2, NOW);
        assert_eq!(
            fleet.get("a").unwrap().status,
            pb::HostStatus::Offline as i32
        );
    }

    #[test]
    fn revoking_closes_the_session_with_a_reason() {
        let fleet = Fleet::new(vec![row("a", "r", &[])], 3);
        let (s1, mut rx) = session(1);
        fleet.connected("a", s1, pb::Inventory::default(), 10, NOW);
        let host = fleet.revoked("a", NOW).unwrap();
        assert_eq!(host.status, pb::HostStatus::Revoked as i32);
        match rx.try_recv().unwrap().unwrap().body {
            Some(Body::Disconnect(d)) => assert!(d.reason.contains("revoked"), "{}", d.reason),
            other => panic!("expected a disconnect, got {other:?}"),
        }
        let status = rx.try_recv().unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        // Revoked stays revoked whatever the sweep sees.
        fleet.sweep(NOW + 1);
        assert_eq!(fleet.state_counts().revoked, 1);
        assert!(!fleet.has_session("a"));
    }
}
