//! Converts a validated service spec into the container spec agents run
//! (`argosy.v1.ContainerSpec`), so the agent needs no knowledge of specs,
//! strategies or placement. Secrets travel as names and resolved versions
//! only; the agent asks for the values over its session.

use super::model::{HealthProbe, Protocol, RestartPolicy, SecretRef, ServiceSpec, VolumeSource};
use super::secret_refs::ResolvedVersions;
use argosy_proto::v1::{self as pb, health_check_spec, restart_spec};

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The wire reference of a secret in a revision resolved to `resolved`.
/// Version 0 (a followed name the revision never resolved) is never
/// granted, so such an allocation fails with the denial's reason.
fn secret_ref(secret: &SecretRef, resolved: &ResolvedVersions) -> pb::SecretRef {
    pb::SecretRef {
        name: secret.name.clone(),
        version: resolved
            .version_of(&secret.name, secret.version)
            .unwrap_or(0),
    }
}

/// What an agent needs to run one replica of `spec`, whose revision
/// resolved its followed secrets to `resolved`.
pub fn container_spec(spec: &ServiceSpec, resolved: &ResolvedVersions) -> pb::ContainerSpec {
    let r = &spec.resources;
    pb::ContainerSpec {
        image: spec.image.clone(),
        command: spec.command.clone(),
        env: spec.env.clone().into_iter().collect(),
        ports: spec
            .ports
            .iter()
            .map(|p| pb::PortSpec {
                container_port: u32::from(p.container_port),
                host_port: p.host_port.map_or(0, u32::from),
                host_ip: p.host_ip.map(|ip| ip.to_string()).unwrap_or_default(),
                protocol: match p.protocol {
                    Protocol::Tcp => "tcp",
                    Protocol::Udp => "udp",
                }
                .to_owned(),
            })
            .collect(),
        volumes: spec
            .volumes
            .iter()
            .map(|v| {
                let (source, bind) = match &v.source {
                    VolumeSource::Named(name) => (name.clone(), false),
                    VolumeSource::Bind(path) => (path.display().to_string(), true),
                };
                pb::VolumeSpec {
                    source,
                    bind,
                    target: v.target.clone(),
                    read_only: v.read_only,
                }
            })
            .collect(),
        cpu_millis: r.cpu_millis,
        memory_bytes: r.memory_bytes,
        memory_swap_bytes: r.memory_swap_bytes.unwrap_or(0),
        pids_limit: r.pids.unwrap_or(0),
        health_check: spec.health_check.as_ref().map(|h| pb::HealthCheckSpec {
            probe: Some(match &h.probe {
                HealthProbe::Http {
                    path,
                    port,
                    expected_status,
                } => health_check_spec::Probe::Http(pb::HttpProbe {
                    path: path.clone(),
                    port: u32::from(*port),
                    expected_status: u32::from(*expected_status),
                }),
                HealthProbe::Tcp { port } => health_check_spec::Probe::Tcp(pb::TcpProbe {
                    port: u32::from(*port),
                }),
                HealthProbe::Exec { command } => health_check_spec::Probe::Exec(pb::ExecProbe {
                    command: command.clone(),
                }),
            }),
            interval_ms: millis(h.interval),
            timeout_ms: millis(h.timeout),
            retries: h.retries,
            start_period_ms: millis(h.start_period),
        }),
        restart: Some(match spec.restart {
            RestartPolicy::Never => pb::RestartSpec {
                policy: restart_spec::Policy::Never as i32,
                max_retries: 0,
            },
            RestartPolicy::OnFailure { max_retries } => pb::RestartSpec {
                policy: restart_spec::Policy::OnFailure as i32,
                max_retries: max_retries.unwrap_or(0),
            },
            RestartPolicy::Always => pb::RestartSpec {
                policy: restart_spec::Policy::Always as i32,
                max_retries: 0,
            },
        }),
        secret_env: spec
            .secret_env
            .iter()
            .map(|(variable, secret)| pb::SecretEnv {
                variable: variable.clone(),
                secret: Some(secret_ref(secret, resolved)),
            })
            .collect(),
        secret_files: spec
            .secret_files
            .iter()
            .map(|file| pb::SecretFile {
                secret: Some(secret_ref(&file.secret, resolved)),
                file: file.file.clone(),
                mode: file.mode,
                uid: file.uid,
                gid: file.gid,
            })
            .collect(),
        route_port: spec.route.as_ref().map_or(0, |r| u32::from(r.port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::model::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn secret(name: &str, version: SecretVersion) -> SecretRef {
        SecretRef {
            name: name.into(),
            version,
        }
    }

    fn resolved() -> ResolvedVersions {
        ResolvedVersions(BTreeMap::from([
            ("crm/db-password".into(), 4),
            ("crm/tls/key".into(), 2),
        ]))
    }

    fn spec() -> ServiceSpec {
        ServiceSpec {
            name: "web".into(),
            image: "registry.local/web:v1".into(),
            command: vec!["httpd".into(), "-f".into()],
            env: BTreeMap::from([("MODE".into(), "prod".into())]),
            secret_env: BTreeMap::from([
                (
                    "DB_PASSWORD".into(),
                    secret("crm/db-password", SecretVersion::Latest),
                ),
                (
                    "API_KEY".into(),
                    secret("crm/api-key", SecretVersion::Pinned(3)),
                ),
            ]),
            secret_files: vec![SecretFile {
                secret: secret("crm/tls/key", SecretVersion::Latest),
                file: "tls.key".into(),
                mode: 0o440,
                uid: 1000,
                gid: 1001,
            }],
            ports: vec![
                PortMapping {
                    container_port: 8080,
                    host_port: Some(18080),
                    host_ip: Some("127.0.0.1".parse().unwrap()),
                    protocol: Protocol::Tcp,
                },
                PortMapping {
                    container_port: 53,
                    host_port: None,
                    host_ip: None,
                    protocol: Protocol::Udp,
                },
            ],
            volumes: vec![
                VolumeMount {
                    source: VolumeSource::Named("data".into()),
                    target: "/data".into(),
                    read_only: false,
                },
                VolumeMount {
                    source: VolumeSource::Bind("/srv/www".into()),
                    target: "/www".into(),
                    read_only: true,
                },
            ],
            replicas: 2,
            placement: Placement::default(),
            resources: Resources {
                cpu_millis: 500,
                memory_bytes: 64 << 20,
                memory_swap_bytes: None,
                pids: Some(100),
            },
            health_check: Some(HealthCheck {
                probe: HealthProbe::Http {
                    path: "/version".into(),
                    port: 8080,
                    expected_status: 200,
                },
                interval: Duration::from_secs(2),
                timeout: Duration::from_millis(500),
                retries: 3,
                start_period: Duration::from_secs(1),
            }),
            restart: RestartPolicy::OnFailure {
                max_retries: Some(5),
            },
            update: UpdateStrategy::Rolling(Rolling::default()),
            pre_deploy_backup: None,
            route: None,
        }
    }

    #[test]
    fn carries_everything_the_agent_runs() {
        let c = container_spec(&spec(), &resolved());
        assert_eq!(c.image, "registry.local/web:v1");
        assert_eq!(c.command, ["httpd", "-f"]);
        assert_eq!(c.env.get("MODE").map(String::as_str), Some("prod"));
        assert_eq!(
            c.ports,
            [
                pb::PortSpec {
                    container_port: 8080,
                    host_port: 18080,
                    host_ip: "127.0.0.1".into(),
                    protocol: "tcp".into()
                },
                pb::PortSpec {
                    container_port: 53,
                    host_port: 0,
                    host_ip: String::new(),
                    protocol: "udp".into()
                },
            ]
        );
        assert_eq!(c.volumes[0].source, "data");
        assert!(!c.volumes[0].bind);
        assert_eq!(c.volumes[1].source, "/srv/www");
        assert!(c.volumes[1].bind && c.volumes[1].read_only);
        assert_eq!(
            (
                c.cpu_millis,
                c.memory_bytes,
                c.memory_swap_bytes,
                c.pids_limit
            ),
            (500, 64 << 20, 0, 100)
        );
        let health = c.health_check.unwrap();
        assert_eq!(
            health.probe,
            Some(health_check_spec::Probe::Http(pb::HttpProbe {
                path: "/version".into(),
                port: 8080,
                expected_status: 200
            }))
        );
        assert_eq!(
            (
                health.interval_ms,
                health.timeout_ms,
                health.retries,
                health.start_period_ms
            ),
            (2000, 500, 3, 1000)
        );
        let restart = c.restart.unwrap();
        assert_eq!(restart.policy, restart_spec::Policy::OnFailure as i32);
        assert_eq!(restart.max_retries, 5);
    }

    #[test]
    fn secrets_travel_as_names_and_resolved_versions() {
        let c = container_spec(&spec(), &resolved());
        let reference = |name: &str, version| {
            Some(pb::SecretRef {
                name: name.into(),
                version,
            })
        };
        assert_eq!(
            c.secret_env,
            [
                pb::SecretEnv {
                    variable: "API_KEY".into(),
                    secret: reference("crm/api-key", 3),
                },
                pb::SecretEnv {
                    variable: "DB_PASSWORD".into(),
                    secret: reference("crm/db-password", 4),
                },
            ]
        );
        assert_eq!(
            c.secret_files,
            [pb::SecretFile {
                secret: reference("crm/tls/key", 2),
                file: "tls.key".into(),
                mode: 0o440,
                uid: 1000,
                gid: 1001,
            }]
        );
        // Secret variables are not plain variables.
        assert_eq!(c.env.len(), 1);
        // A followed name the revision never resolved goes out as version 0,
        // which is never granted.
        let c = container_spec(&spec(), &ResolvedVersions::default());
        assert_eq!(c.secret_env[1].secret, reference("crm/db-password", 0));
        assert_eq!(c.secret_env[0].secret, reference("crm/api-key", 3));
    }

    #[test]
    fn the_route_port_is_sent_and_zero_without_a_route() {
        let mut s = spec();
        assert_eq!(container_spec(&s, &resolved()).route_port, 0);
        s.route = Some(Route {
            hostnames: vec!["web.example.com".into()],
            paths: vec!["/".into()],
            port: 9000,
            tls: None,
            regions: RouteRegions::Nearest,
            drain: DEFAULT_DRAIN,
        });
        let c = container_spec(&s, &resolved());
        assert_eq!(c.route_port, 9000);
        // The route adds no published port: the agent chooses one.
        assert_eq!(c.ports, container_spec(&spec(), &resolved()).ports);
    }

    #[test]
    fn restart_policies_and_probes() {
        let mut s = spec();
        s.restart = RestartPolicy::Always;
        s.health_check.as_mut().unwrap().probe = HealthProbe::Exec {
            command: vec!["true".into()],
        };
        let c = container_spec(&s, &resolved());
        assert_eq!(
            c.restart.unwrap().policy,
            restart_spec::Policy::Always as i32
        );
        assert!(matches!(
            c.health_check.unwrap().probe,
            Some(health_check_spec::Probe::Exec(_))
        ));
        s.restart = RestartPolicy::Never;
        s.health_check = None;
        let c = container_spec(&s, &resolved());
        assert_eq!(
            c.restart.unwrap().policy,
            restart_spec::Policy::Never as i32
        );
        assert!(c.health_check.is_none());
    }
}
