//! The allocations runtime against a real Docker engine (`DOCKER_HOST`,
//! started by `scripts/docker-engine` through `scripts/test`): limits,
//! health checks, pull failures, a taken port, OOM kills with backoff,
//! adoption after an agent restart, unmanaged containers, logs.
//!
//! Each test uses its own owner label, so they run in parallel on one
//! engine without seeing each other's containers.

mod support;

use argosy_agent::docker::{Engine, LogStream};
use argosy_proto::v1::allocation_status::{Health, State};
use argosy_proto::v1::health_check_spec::Probe;
use argosy_proto::v1::restart_spec::Policy;
use argosy_proto::v1::{ExecProbe, HttpProbe, PortSpec, RestartSpec, TcpProbe, VolumeSpec};
use std::time::{Duration, Instant};
use support::*;
use tokio_stream::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_limits_ports_volumes_and_labels_are_applied() {
    let mut h = Harness::start("limits").await;
    let port = free_port();
    let bind_dir = tempfile::tempdir().unwrap();
    std::fs::write(bind_dir.path().join("hello"), "from the host\n").unwrap();
    let volume = unique("argosy-test-vol");
    let mut spec = web(WEB_V1);
    spec.cpu_millis = 500;
    spec.memory_bytes = 64 << 20;
    spec.memory_swap_bytes = 0;
    spec.pids_limit = 100;
    spec.env.insert("GREETING".into(), "hello".into());
    spec.ports = vec![PortSpec {
        container_port: 8080,
        host_port: u32::from(port),
        host_ip: "127.0.0.1".into(),
        protocol: "tcp".into(),
    }];
    spec.volumes = vec![
        VolumeSpec {
            source: volume.clone(),
            bind: false,
            target: "/data".into(),
            read_only: false,
        },
        VolumeSpec {
            source: bind_dir.path().display().to_string(),
            bind: true,
            target: "/host".into(),
            read_only: true,
        },
    ];
    h.apply(1, vec![allocation("lim-1", spec)]);
    let status = h.wait_running("lim-1").await;
    assert_eq!(status.health(), Health::None);
    assert_eq!(h.report_version(), 1);

    let engine = Engine::connect(Some(&h.host)).await.unwrap();
    let inspect = engine.inspect_json(&status.container_id).await.unwrap();
    let host_config = &inspect["HostConfig"];
    assert_eq!(host_config["Memory"], 64 << 20, "{host_config:#}");
    assert_eq!(host_config["MemorySwap"], 64 << 20);
    assert_eq!(host_config["NanoCpus"], 500_000_000);
    assert_eq!(host_config["PidsLimit"], 100);
    assert_eq!(host_config["RestartPolicy"]["Name"], "no");
    assert_eq!(
        host_config["PortBindings"]["8080/tcp"][0]["HostPort"],
        port.to_string()
    );
    let labels = &inspect["Config"]["Labels"];
    assert_eq!(labels["argosy.managed"], "true");
    assert_eq!(labels["argosy.allocation"], "lim-1");
    assert_eq!(labels["argosy.service"], "web");
    assert_eq!(labels["argosy.revision"], "rev-1");
    assert_eq!(labels["argosy.host"], h.owner.as_str());
    assert!(
        inspect["Config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "GREETING=hello")
    );

    // The limit is enforced where the kernel sees it, the port answers, the
    // mounts are there.
    let id = &status.container_id;
    assert_eq!(
        docker_cli(
            &h.host,
            &[
                "exec",
                id,
                "cat",
                "/sys/fs/cgroup/memory/memory.limit_in_bytes"
            ]
        ),
        "67108864"
    );
    let (code, body) = http_get(([127, 0, 0, 1], port).into(), "/version")
        .await
        .unwrap();
    assert_eq!((code, body.as_str()), (200, "v1\n"));
    assert_eq!(
        docker_cli(&h.host, &["exec", id, "cat", "/host/hello"]),
        "from the host"
    );
    docker_cli(&h.host, &["exec", id, "touch", "/data/written"]);
    let readonly = std::process::Command::new("docker")
        .args(["exec", id, "touch", "/host/nope"])
        .env("DOCKER_HOST", &h.host)
        .output()
        .unwrap();
    assert!(
        !readonly.status.success(),
        "the bind mount is not read-only"
    );

    // Draining removes the container (the named volume stays).
    let mut drained = allocation("lim-1", web(WEB_V1));
    drained.run = false;
    h.apply(2, vec![drained]);
    h.wait_status("lim-1", "stopped", Duration::from_secs(30), |s| {
        s.state() == State::Stopped && s.container_id.is_empty()
    })
    .await;
    assert!(h.containers().is_empty());
    docker_cli_quiet(&h.host, &["volume", "rm", &volume]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_health_checks_http_tcp_and_exec() {
    let mut h = Harness::start("health").await;
    let with = |probe| {
        let mut spec = web(WEB_V1);
        spec.health_check = Some(check(probe));
        spec
    };
    let http = |path: &str| {
        Probe::Http(HttpProbe {
            path: path.into(),
            port: 8080,
            expected_status: 0,
        })
    };
    let exec = |command: &[&str]| {
        Probe::Exec(ExecProbe {
            command: command.iter().map(|s| s.to_string()).collect(),
        })
    };
    let started = support::now_ms();
    h.apply(
        1,
        vec![
            allocation("http-ok", with(http("/version"))),
            allocation("http-bad", with(http("/nope"))),
            allocation("tcp-ok", with(Probe::Tcp(TcpProbe { port: 8080 }))),
            allocation("tcp-bad", with(Probe::Tcp(TcpProbe { port: 9 }))),
            allocation("exec-ok", with(exec(&["grep", "-q", "v1", "/www/version"]))),
            allocation("exec-bad", with(exec(&["false"]))),
        ],
    );
    for id in ["http-ok", "tcp-ok", "exec-ok"] {
        let status = h
            .wait_status(id, "healthy", Duration::from_secs(60), |s| {
                s.health() == Health::Healthy
            })
            .await;
        assert_eq!(status.state(), State::Running);
        assert!(status.healthy_since_ms >= started, "{status:?}");
    }
    for (id, error) in [
        ("http-bad", "/nope answered 404, expected 2xx or 3xx"),
        ("tcp-bad", "cannot connect to"),
        ("exec-bad", "`false` exited with code 1"),
    ] {
        let status = h
            .wait_status(id, "unhealthy", Duration::from_secs(60), |s| {
                s.health() == Health::Unhealthy
            })
            .await;
        assert_eq!(status.state(), State::Running, "{status:?}");
        assert_eq!(status.healthy_since_ms, 0);
        assert!(
            status.message.starts_with("health check failing:") && status.message.contains(error),
            "{id}: {}",
            status.message
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_images_are_pulled_from_the_registry_and_a_missing_one_fails() {
    let registry = registry();
    let mut h = Harness::start("pull").await;
    let image = format!("{registry}/argosy-test/web:v2");
    // Make the pull real even if an earlier run left the image behind.
    docker_cli_quiet(&h.host, &["rmi", &image]);
    let missing = format!("{registry}/argosy-test/does-not-exist:v9");
    h.apply(
        1,
        vec![
            allocation("pulled", web(&image)),
            allocation("missing", web(&missing)),
        ],
    );
    let status = h.wait_running("pulled").await;
    let engine = Engine::connect(Some(&h.host)).await.unwrap();
    let inspect = engine.inspect_json(&status.container_id).await.unwrap();
    assert_eq!(inspect["Config"]["Image"], image.as_str());

    let status = h
        .wait_status("missing", "failed", Duration::from_secs(60), |s| {
            s.state() == State::Failed
        })
        .await;
    assert!(
        status
            .message
            .starts_with(&format!("image {missing} could not be pulled: ")),
        "{}",
        status.message
    );
    assert!(status.container_id.is_empty());
    assert!(
        status.message.ends_with("; retrying 1 s after the failure"),
        "{}",
        status.message
    );
    // It is retried with backoff (1 s, then 2 s), failing the same way.
    let deadline = Instant::now() + patience(Duration::from_secs(30));
    while h.history()["missing"]["failure"]["attempts"].as_u64() < Some(3) {
        assert!(Instant::now() < deadline, "not retried: {:#}", h.history());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = h
        .wait_status(
            "missing",
            "the third failure",
            Duration::from_secs(10),
            |s| s.message.ends_with("; retrying 4 s after the failure"),
        )
        .await;
    assert_eq!(status.state(), State::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_a_port_in_use_fails_with_that_message() {
    let mut h = Harness::start("port").await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut spec = web(WEB_V1);
    spec.ports = vec![PortSpec {
        container_port: 8080,
        host_port: u32::from(port),
        host_ip: "127.0.0.1".into(),
        protocol: String::new(),
    }];
    h.apply(1, vec![allocation("port-1", spec)]);
    let status = h
        .wait_status("port-1", "failed", Duration::from_secs(60), |s| {
            s.state() == State::Failed
        })
        .await;
    assert!(
        status
            .message
            .starts_with("cannot start the container: a published host port is already in use")
            && status.message.contains(&port.to_string()),
        "{}",
        status.message
    );
    // Once the port is free, a retry starts it.
    drop(taken);
    h.wait_running("port-1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_an_oom_killed_container_is_reported_and_restarted_with_backoff() {
    let mut h = Harness::start("oom").await;
    let mut spec = web(WEB_V1);
    spec.memory_bytes = 8 << 20;
    spec.command = vec![
        "sh".into(),
        "-c".into(),
        "x=a; while :; do x=$x$x$x$x; done".into(),
    ];
    spec.restart = Some(RestartSpec {
        policy: Policy::OnFailure as i32,
        max_retries: 0,
    });
    h.apply(1, vec![allocation("hog", spec)]);
    let first = h
        .wait_status(
            "hog",
            "OOM killed and restarted",
            Duration::from_secs(60),
            |s| s.oom_killed && s.restarts >= 1,
        )
        .await;
    assert_eq!(first.exit_code, 137, "{first:?}");
    // Counted from what this test saw, which on a busy machine may be
    // later than restart 1: two more restarts need at least the second
    // one's backoff (2 s, 4 s, 8 s … after each exit), so never under 4 s.
    let seen = first.restarts;
    let since = Instant::now();
    let third = h
        .wait_status(
            "hog",
            "restarted twice more",
            Duration::from_secs(90),
            |s| s.restarts >= seen + 2,
        )
        .await;
    assert!(
        since.elapsed() >= Duration::from_millis(3_500),
        "restarted too fast: {:?} for restarts {seen} → {}",
        since.elapsed(),
        third.restarts
    );
    // …and the backoff exponent grew with every short run.
    let history = h.history();
    let hog = &history["hog"];
    assert_eq!(hog["streak"], hog["restarts"], "{history:#}");
    assert_eq!(hog["last_exit"]["code"], 137, "{history:#}");
    // (Not `oom_killed` again: Docker 20.10 on cgroup v1 sometimes handles
    // the exit before the OOM event and reports a plain SIGKILL.)
    assert_eq!(third.exit_code, 137, "{third:?}");
    // The same container, restarted in place.
    assert_eq!(third.container_id, first.container_id);
    assert_eq!(h.containers().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_containers_are_adopted_after_an_agent_restart() {
    let mut h = Harness::start("adopt").await;
    h.apply(
        1,
        vec![
            allocation("keep-1", web(WEB_V1)),
            allocation("keep-2", web(WEB_V1)),
        ],
    );
    let one = h.wait_running("keep-1").await;
    let two = h.wait_running("keep-2").await;
    assert_eq!(h.containers().len(), 2);

    // A new runtime on the same state directory, with no control plane.
    h.restart_runtime();
    let report = h
        .wait_for("both adopted", Duration::from_secs(30), |r| {
            r.allocations.len() == 2 && r.allocations.iter().all(|s| s.state() == State::Running)
        })
        .await;
    assert_eq!(report.applied_version, 1);
    assert_eq!(
        status(&report, "keep-1").unwrap().container_id,
        one.container_id
    );
    assert_eq!(
        status(&report, "keep-2").unwrap().container_id,
        two.container_id
    );
    // A few passes later: still no duplicates.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut ids = h.containers();
    ids.sort();
    let mut expected = vec![one.container_id.clone(), two.container_id.clone()];
    expected.sort();
    assert_eq!(ids, expected);

    // An older desired state is ignored; a newer one without keep-2 removes
    // its container (no orphans).
    assert!(
        !h.allocations()
            .apply(argosy_proto::v1::DesiredState {
                version: 0,
                allocations: vec![],
            })
            .unwrap()
    );
    h.apply(2, vec![allocation("keep-1", web(WEB_V1))]);
    h.wait_for("keep-2 gone", Duration::from_secs(30), |r| {
        r.applied_version == 2 && r.allocations.len() == 1
    })
    .await;
    let deadline = Instant::now() + patience(Duration::from_secs(30));
    while h.containers() != vec![one.container_id.clone()] {
        assert!(
            Instant::now() < deadline,
            "keep-2's container was not removed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A changed spec recreates keep-1; the health check does not count.
    let mut v2 = web(WEB_V2);
    v2.health_check = Some(check(Probe::Http(HttpProbe {
        path: "/version".into(),
        port: 8080,
        expected_status: 200,
    })));
    h.apply(3, vec![allocation("keep-1", v2)]);
    let recreated = h
        .wait_status("keep-1", "recreated", Duration::from_secs(60), |s| {
            s.state() == State::Running
                && s.health() == Health::Healthy
                && s.container_id != one.container_id
        })
        .await;
    assert_eq!(h.containers(), vec![recreated.container_id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_unmanaged_containers_are_never_touched() {
    let mut h = Harness::start("foreign").await;
    // Made by someone else: no managed label, or another agent's.
    let plain = docker_cli(
        &h.host,
        &[
            "run",
            "-d",
            "--label",
            &format!("argosy.host={}", h.owner),
            "--label",
            "argosy.allocation=mine",
            WEB_V1,
        ],
    );
    let other_agent = docker_cli(
        &h.host,
        &[
            "run",
            "-d",
            "--label",
            "argosy.managed=true",
            "--label",
            &format!("argosy.host={}-other", h.owner),
            "--label",
            "argosy.allocation=mine",
            WEB_V1,
        ],
    );
    // A leftover of our own with no desired allocation: an orphan.
    let orphan = docker_cli(
        &h.host,
        &[
            "create",
            "--label",
            "argosy.managed=true",
            "--label",
            &format!("argosy.host={}", h.owner),
            "--label",
            "argosy.allocation=gone",
            WEB_V1,
        ],
    );
    h.apply(1, vec![allocation("mine", web(WEB_V1))]);
    let mine = h.wait_running("mine").await;
    assert_ne!(mine.container_id, plain);
    let deadline = Instant::now() + patience(Duration::from_secs(30));
    while h.containers().contains(&orphan) {
        assert!(Instant::now() < deadline, "the orphan was not removed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A second running container of ours for the same allocation and spec,
    // found by an agent (re)starting: one of the two goes, the newest
    // healthy one stays. (The runtime is stopped meanwhile: a running one
    // would remove the duplicate while it is only created, not running.)
    h.stop_runtime();
    let spec_hash = argosy_agent::reconcile::spec_hash(&web(WEB_V1));
    let duplicate = docker_cli(
        &h.host,
        &[
            "run",
            "-d",
            "--label",
            "argosy.managed=true",
            "--label",
            &format!("argosy.host={}", h.owner),
            "--label",
            "argosy.allocation=mine",
            "--label",
            &format!("argosy.spec-hash={spec_hash}"),
            WEB_V1,
        ],
    );
    h.restart_runtime();
    let deadline = Instant::now() + patience(Duration::from_secs(30));
    while h.containers().contains(&mine.container_id) {
        assert!(
            Instant::now() < deadline,
            "the older duplicate was not removed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    h.wait_status(
        "mine",
        "the newest container",
        Duration::from_secs(30),
        |s| s.container_id == duplicate && s.state() == State::Running,
    )
    .await;

    // Several passes, then an empty desired state: the foreign ones run on.
    h.apply(2, vec![]);
    h.wait_for("mine gone", Duration::from_secs(30), |r| {
        r.applied_version == 2 && r.allocations.is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for id in [&plain, &other_agent] {
        assert_eq!(
            docker_cli(&h.host, &["inspect", "-f", "{{.State.Running}}", id]),
            "true"
        );
    }
    docker_cli_quiet(&h.host, &["rm", "-f", &plain, &other_agent]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_logs_stream_stdout_and_stderr_and_follow() {
    let mut h = Harness::start("logs").await;
    let mut spec = web(WEB_V1);
    spec.command = vec![
        "sh".into(),
        "-c".into(),
        "echo out; echo err >&2; i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.2; done".into(),
    ];
    h.apply(1, vec![allocation("talker", spec)]);
    h.wait_running("talker").await;
    // Give it time to write a few lines.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let chunks: Vec<_> = h
        .allocations()
        .logs("talker", false, None)
        .await
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    let text = |stream| {
        chunks
            .iter()
            .filter(|c| c.stream == stream)
            .map(|c| String::from_utf8_lossy(&c.data).into_owned())
            .collect::<String>()
    };
    assert!(text(LogStream::Stdout).starts_with("out\n"), "{chunks:?}");
    assert_eq!(text(LogStream::Stderr), "err\n");

    let mut follow = h.allocations().logs("talker", true, Some(0)).await.unwrap();
    let mut ticks = 0;
    while ticks < 3 {
        let chunk = tokio::time::timeout(patience(Duration::from_secs(10)), follow.next())
            .await
            .expect("following the logs stalled")
            .expect("the log stream ended")
            .unwrap();
        ticks += String::from_utf8_lossy(&chunk.data).matches("tick").count();
    }

    let error = h
        .allocations()
        .logs("nope", false, None)
        .await
        .err()
        .unwrap();
    assert_eq!(
        error.to_string(),
        "there is no allocation nope on this host"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_route_ports_are_published_and_reported() {
    let mut h = Harness::start("route").await;
    // Not published by `ports`: an ephemeral port on the advertise address
    // (the harness's default, 127.0.0.1).
    let mut ephemeral = web(WEB_V1);
    ephemeral.route_port = 8080;
    // Published by `ports` on a fixed port of every address: that port,
    // on the advertise address.
    let fixed_port = free_port();
    let mut fixed = web(WEB_V1);
    fixed.route_port = 8080;
    fixed.ports = vec![PortSpec {
        container_port: 8080,
        host_port: u32::from(fixed_port),
        host_ip: String::new(),
        protocol: "tcp".into(),
    }];
    h.apply(
        1,
        vec![
            allocation("route-eph", ephemeral.clone()),
            allocation("route-fixed", fixed),
        ],
    );
    let status = h
        .wait_status(
            "route-eph",
            "a route address",
            Duration::from_secs(60),
            |s| s.state() == State::Running && !s.route_address.is_empty(),
        )
        .await;
    let address: std::net::SocketAddr = status.route_address.parse().unwrap();
    assert_eq!(address.ip().to_string(), "127.0.0.1");
    assert_ne!(address.port(), 8080);
    let (code, body) = http_get(address, "/version").await.unwrap();
    assert_eq!((code, body.as_str()), (200, "v1\n"));

    let fixed_status = h
        .wait_status(
            "route-fixed",
            "a route address",
            Duration::from_secs(60),
            |s| s.state() == State::Running && !s.route_address.is_empty(),
        )
        .await;
    assert_eq!(
        fixed_status.route_address,
        format!("127.0.0.1:{fixed_port}")
    );

    // A new route port is a new container (the spec hash covers it).
    let first = status.container_id.clone();
    let mut moved = ephemeral;
    moved.route_port = 8081;
    h.apply(2, vec![allocation("route-eph", moved)]);
    let status = h
        .wait_status("route-eph", "recreated", Duration::from_secs(60), |s| {
            s.state() == State::Running && !s.container_id.is_empty() && s.container_id != first
        })
        .await;
    let engine = Engine::connect(Some(&h.host)).await.unwrap();
    let inspect = engine.inspect_json(&status.container_id).await.unwrap();
    let binding = &inspect["HostConfig"]["PortBindings"]["8081/tcp"][0];
    assert_eq!(binding["HostIp"], "127.0.0.1", "{inspect:#}");
}
