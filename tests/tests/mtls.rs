//! Mutual TLS on the agent API: calls without a client certificate are
//! Unauthenticated, a certificate from another CA fails the handshake, a
//! revoked host is cut off at once and stays out; plus the standard gRPC
//! reflection and health services.

use anyhow::{Context, ensure};
use argosy_e2e::api::{pinned_channel, status_text, tls_probe};
use argosy_e2e::{Agent, ControlPlane, TestEnv, both_stores, eventually, pb};
use argosy_proto::tls::ReloadableIdentity;
use pb::agent_service_client::AgentServiceClient;
use std::time::Duration;

both_stores!(
    agent_calls_need_a_client_certificate,
    foreign_client_certificate_is_refused,
    revoked_host_is_cut_off,
    reflection_and_health,
);

fn csr() -> anyhow::Result<String> {
    let key = rcgen::KeyPair::generate()?;
    Ok(rcgen::CertificateParams::default()
        .serialize_request(&key)?
        .pem()?)
}

fn hello() -> pb::AgentMessage {
    pb::AgentMessage {
        seq: 1,
        body: Some(pb::agent_message::Body::Hello(pb::Hello {
            inventory: Some(pb::Inventory {
                hostname: "intruder".into(),
                ..Default::default()
            }),
            interval_seconds: 1,
        })),
    }
}

/// A client certificate (chain PEM, key PEM) for `common_name`, signed by a
/// freshly made CA the control plane has never seen.
fn foreign_identity(common_name: &str) -> anyhow::Result<(String, String)> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::default();
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Argosy control-plane CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate()?;
    let mut leaf = rcgen::CertificateParams::default();
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;
    Ok((
        format!("{}{}", leaf_cert.pem(), ca_cert.pem()),
        leaf_key.serialize_pem(),
    ))
}

async fn agent_calls_need_a_client_certificate(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    let join = cp.join_string("eu-west", &[], 1).await?;
    let mut agent = Agent::start(env, &join, "1s")?;
    let host_id = agent.wait_enrolled().await?;
    let before = cp.wait_online(&host_id).await?;

    let mut anonymous = AgentServiceClient::new(cp.channel());
    let renew = anonymous
        .renew_certificate(pb::RenewCertificateRequest { csr_pem: csr()? })
        .await;
    let status = renew
        .err()
        .context("RenewCertificate without a client certificate succeeded")?;
    ensure!(
        status.code() == tonic::Code::Unauthenticated,
        "RenewCertificate: {}",
        status_text(&status)
    );
    ensure!(
        status.message().contains("client certificate"),
        "RenewCertificate: {}",
        status.message()
    );

    let session = anonymous.session(tokio_stream::iter(vec![hello()])).await;
    let status = session
        .err()
        .context("Session without a client certificate succeeded")?;
    ensure!(
        status.code() == tonic::Code::Unauthenticated,
        "Session: {}",
        status_text(&status)
    );
    ensure!(
        status.message().contains("client certificate"),
        "Session: {}",
        status.message()
    );

    // Even an API token does not replace the certificate.
    let mut with_token = AgentServiceClient::new(cp.authed(Some(&cp.admin_token)));
    let status = with_token
        .renew_certificate(pb::RenewCertificateRequest { csr_pem: csr()? })
        .await
        .err()
        .context("RenewCertificate with only an API token succeeded")?;
    ensure!(
        status.code() == tonic::Code::Unauthenticated,
        "with a token: {}",
        status_text(&status)
    );

    // The agent's own certificate does work (the refusals are about the
    // missing certificate, not a broken endpoint).
    let state = agent.state_dir();
    let identity = ReloadableIdentity::from_pem(
        &std::fs::read(state.join("cert.pem")).context("the agent has no cert.pem")?,
        &std::fs::read(state.join("key.pem")).context("the agent has no key.pem")?,
    )?;
    let mut as_agent = AgentServiceClient::new(pinned_channel(
        cp.grpc_addr,
        cp.ca_fingerprint,
        Some(identity),
    )?);
    let renewed = as_agent
        .renew_certificate(pb::RenewCertificateRequest { csr_pem: csr()? })
        .await
        .map_err(|s| {
            anyhow::anyhow!(
                "RenewCertificate with the agent's certificate: {}",
                status_text(&s)
            )
        })?
        .into_inner();
    ensure!(
        renewed.certificate_pem.contains("BEGIN CERTIFICATE"),
        "no certificate in {renewed:?}"
    );
    ensure!(
        renewed.not_after_ms >= before.certificate_not_after_ms,
        "renewed not_after {}",
        renewed.not_after_ms
    );
    ensure!(
        cp.hosts().await?.iter().all(|h| h.hostname != "intruder"),
        "the anonymous Hello was recorded"
    );
    Ok(())
}

async fn foreign_client_certificate_is_refused(env: &TestEnv) -> anyhow::Result<()> {
    let cp = ControlPlane::start(env, &[]).await?;
    let join = cp.join_string("eu-west", &[], 1).await?;
    let mut agent = Agent::start(env, &join, "1s")?;
    let host_id = agent.wait_enrolled().await?;
    let before = cp.wait_online(&host_id).await?;

    // A certificate naming the real host, signed by someone else's CA.
    let (chain, key) = foreign_identity(&host_id)?;
    let identity = ReloadableIdentity::from_pem(chain.as_bytes(), key.as_bytes())?;
    let mut forged = AgentServiceClient::new(pinned_channel(
        cp.grpc_addr,
        cp.ca_fingerprint,
        Some(identity),
    )?);
    let status = forged
        .renew_certificate(pb::RenewCertificateRequest { csr_pem: csr()? })
        .await
        .err()
        .context("RenewCertificate with a foreign client certificate succeeded")?;
    // The server never answers the call itself: the connection dies.
    ensure!(
        matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
        ),
        "expected a transport failure, got {}",
        status_text(&status)
    );
    // At the TLS level: the handshake is refused with an alert about the
    // certificate, while the agent's own certificate is accepted.
    let identity = ReloadableIdentity::from_pem(chain.as_bytes(), key.as_bytes())?;
    let refused = tls_probe(cp.grpc_addr, cp.ca_fingerprint, Some(identity))
        .await
        .err()
        .context("the TLS handshake with a foreign client certificate succeeded")?;
    let text = format!("{refused:#}");
    ensure!(
        text.contains("alert")
            && (text.contains("UnknownCA")
                || text.contains("BadCertificate")
                || text.contains("CertificateUnknown")),
        "the handshake failure does not name the certificate: {text}"
    );
    let state = agent.state_dir();
    let own = ReloadableIdentity::from_pem(
        &std::fs::read(state.join("cert.pem"))?,
        &std::fs::read(state.join("key.pem"))?,
    )?;
    tls_probe(cp.grpc_addr, cp.ca_fingerprint, Some(own))
        .await
        .context("the agent's own certificate must pass the same handshake")?;
    let session = forged.session(tokio_stream::iter(vec![hello()])).await;
    ensure!(
        session.is_err(),
        "Session with a foreign certificate was accepted"
    );

    let after = cp.host(&host_id).await?;
    ensure!(
        after.certificate_not_after_ms == before.certificate_not_after_ms,
        "the forged renewal changed the host's certificate"
    );
    ensure!(
        after.status == pb::HostStatus::Online as i32,
        "the real agent was disturbed: {after:?}"
    );
    Ok(())
}

async fn revoked_host_is_cut_off(env: &TestEnv) -> anyhow::Result<()> {
    use pb::host_event::Kind;
    let mut cp = ControlPlane::start(env, &[]).await?;
    let join = cp.join_string("eu-west", &[], 0).await?;
    let mut agent = Agent::start(env, &join, "1s")?;
    let host_id = agent.wait_enrolled().await?;
    let mut bystander = Agent::start(env, &join, "1s")?;
    let bystander_id = bystander.wait_enrolled().await?;
    cp.wait_online(&host_id).await?;
    cp.wait_online(&bystander_id).await?;
    let mut watch = cp.watch(false).await?;

    let out = cp.cli().run(&["hosts", "revoke", &host_id]).await?.ok()?;
    ensure!(
        out.stdout.contains(&format!("revoked host {host_id}")),
        "hosts revoke printed {}",
        out.stdout
    );
    // At once: the answer already says revoked, and so does the stream.
    let host = cp.host(&host_id).await?;
    ensure!(
        host.status == pb::HostStatus::Revoked as i32,
        "right after revoke: {host:?}"
    );
    watch.next(Kind::Revoked, &host_id).await?;

    // The agent hears about it and is refused when it tries again.
    eventually("the agent to log its revocation", || async {
        let log = agent.logs();
        ensure!(
            log.contains("revoked"),
            "the agent's log does not mention the revocation yet"
        );
        ensure!(
            log.contains("refuses this host")
                || log.contains("PermissionDenied")
                || log.contains("permission denied"),
            "the agent has not been refused on reconnect yet"
        );
        Ok(())
    })
    .await?;
    let frozen = cp.host(&host_id).await?;
    let last_sample = frozen.latest.as_ref().map_or(0, |s| s.timestamp_ms);
    // It never comes back: several intervals later nothing has changed.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let later = cp.host(&host_id).await?;
    ensure!(
        later.status == pb::HostStatus::Revoked as i32,
        "the revoked host came back: {later:?}"
    );
    ensure!(
        later.latest.as_ref().map_or(0, |s| s.timestamp_ms) == last_sample,
        "a revoked host's samples are still accepted"
    );
    ensure!(
        watch.seen().iter().all(|e| !(e.kind == Kind::Online as i32
            && e.host.as_ref().is_some_and(|h| h.id == host_id))),
        "an Online event for the revoked host"
    );
    // The other host is untouched.
    ensure!(
        cp.host(&bystander_id).await?.status == pb::HostStatus::Online as i32,
        "the bystander went down"
    );
    // A fresh start of the agent is refused at once, and so it is after the
    // control plane restarts: the revocation is in the store.
    refused_after_restart(&mut agent).await?;
    cp.restart().await?;
    ensure!(
        cp.host(&host_id).await?.status == pb::HostStatus::Revoked as i32,
        "the revocation did not survive a control-plane restart"
    );
    refused_after_restart(&mut agent).await?;
    ensure!(
        cp.host(&host_id).await?.status == pb::HostStatus::Revoked as i32,
        "the revoked host came back after the restarts"
    );
    cp.wait_online(&bystander_id).await?;
    let json = cp
        .cli()
        .run(&["hosts", "show", &host_id, "-o", "json"])
        .await?
        .ok()?
        .json()?;
    ensure!(json["status"] == "revoked", "hosts show: {json}");
    let again = cp
        .fleet()
        .revoke_host(pb::RevokeHostRequest {
            id: "h-nosuchhost".into(),
        })
        .await;
    ensure!(
        again
            .err()
            .is_some_and(|s| s.code() == tonic::Code::NotFound),
        "revoking an unknown host"
    );
    Ok(())
}

/// Restarts `agent` and waits until the control plane refuses it again.
async fn refused_after_restart(agent: &mut Agent) -> anyhow::Result<()> {
    agent.restart().await?;
    eventually("the restarted agent to be refused", || async {
        let log = agent.logs();
        let since_restart = log
            .rsplit("=== harness: starting")
            .next()
            .unwrap_or_default();
        ensure!(
            since_restart.contains("was revoked"),
            "the restarted agent was not refused yet"
        );
        Ok(())
    })
    .await
}

async fn reflection_and_health(env: &TestEnv) -> anyhow::Result<()> {
    use prost::Message as _;
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let cp = ControlPlane::start(env, &[]).await?;

    let mut reflection = ServerReflectionClient::new(cp.channel());
    let requests = vec![
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        },
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(
                "argosy.v1.FleetService".into(),
            )),
        },
    ];
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter(requests))
        .await?
        .into_inner();
    let listed = answers.message().await?.context("no ListServices answer")?;
    let services: Vec<String> = match listed.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => anyhow::bail!("ListServices answered {other:?}"),
    };
    for wanted in [
        "argosy.v1.FleetService",
        "argosy.v1.AgentService",
        "argosy.v1.JoinTokenService",
        "argosy.v1.ApiTokenService",
        "grpc.health.v1.Health",
    ] {
        ensure!(
            services.iter().any(|s| s == wanted),
            "reflection does not list {wanted}: {services:?}"
        );
    }
    let file = answers
        .message()
        .await?
        .context("no FileContainingSymbol answer")?;
    let files = match file.message_response {
        Some(MessageResponse::FileDescriptorResponse(files)) => files.file_descriptor_proto,
        other => anyhow::bail!("FileContainingSymbol answered {other:?}"),
    };
    let fleet = files
        .iter()
        .filter_map(|bytes| prost_types::FileDescriptorProto::decode(bytes.as_slice()).ok())
        .flat_map(|f| f.service)
        .find(|s| s.name() == "FleetService")
        .context("no FleetService descriptor")?;
    let methods: Vec<&str> = fleet.method.iter().map(|m| m.name()).collect();
    for wanted in [
        "ListHosts",
        "GetHost",
        "WatchHosts",
        "QueryMetrics",
        "RevokeHost",
    ] {
        ensure!(
            methods.contains(&wanted),
            "FleetService lacks {wanted}: {methods:?}"
        );
    }

    let mut health = HealthClient::new(cp.channel());
    for service in ["", "argosy.v1.FleetService", "argosy.v1.AgentService"] {
        let answer = eventually(&format!("{service:?} to be SERVING"), || {
            let mut health = health.clone();
            async move {
                let answer = health
                    .check(HealthCheckRequest {
                        service: service.into(),
                    })
                    .await?
                    .into_inner();
                ensure!(
                    answer.status == ServingStatus::Serving as i32,
                    "status {:?}",
                    answer.status()
                );
                Ok(answer)
            }
        })
        .await?;
        ensure!(answer.status() == ServingStatus::Serving, "{service:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await;
    ensure!(
        unknown
            .err()
            .is_some_and(|s| s.code() == tonic::Code::NotFound),
        "an unknown service must be NotFound"
    );
    Ok(())
}
