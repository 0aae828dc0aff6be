//! The example policies (`policies/`, built for wasm32 by `scripts/test`
//! into `ARGOSY_TEST_POLICY_DIR`) run in the control plane's own sandbox
//! without growing their memory: the SDK's bump allocator serves a
//! decision from the module's initial memory, so the host changes no page
//! protections per call (see `docs/policies.md`, Performance).

use argosy::deploy::spec::{Format, parse};
use argosy::policy::Hook;
use argosy::policy::input::{AdmitInput, Facts, Now, envelope, spec_view};
use argosy::policy::runtime::PolicyHost;
use std::path::PathBuf;

fn policy_dir() -> PathBuf {
    std::env::var_os("ARGOSY_TEST_POLICY_DIR").map(PathBuf::from).expect(
        "ARGOSY_TEST_POLICY_DIR is not set: run scripts/test, which builds the example policies",
    )
}

fn admit_input(spec: &str) -> String {
    let spec = parse(spec, Format::Yaml).expect("the spec parses");
    let input = AdmitInput {
        spec: spec_view(&spec, None),
        document: serde_json::Value::Null,
        format: "yaml",
        actor: "user:ada".to_owned(),
        now: Now::at(1_763_733_600_000),
        dry_run: false,
        service: None,
        facts: Facts::default(),
    };
    serde_json::to_string(&input).expect("the input serializes")
}

#[test]
fn admission_examples_decide_without_growing_memory() {
    let host = PolicyHost::new(argosy::policy::Limits::default()).expect("the sandbox starts");
    let inputs = [
        admit_input(
            "name: web\nimage: registry.example/web:1.4.2\nreplicas: 3\nresources: {cpu: 0.5, memory: 256MiB}\n",
        ),
        admit_input("name: worker\nimage: registry.example/worker:latest\nreplicas: 2\n"),
    ];
    for name in ["require_limits", "no_latest"] {
        let path = policy_dir().join(format!("policy_{name}.wasm"));
        let wasm =
            std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let inspected = host
            .inspect(&wasm)
            .expect("the example passes the upload checks");
        for (i, input) in inputs.iter().enumerate() {
            for _ in 0..3 {
                let request = envelope(Hook::DeploymentAdmit, name, "{}", input);
                let called = host.call(&inspected.compiled, &request);
                let answer = called
                    .result
                    .unwrap_or_else(|e| panic!("{name} failed on input {i}: {e}"));
                let answer: serde_json::Value =
                    serde_json::from_slice(&answer).expect("the answer is JSON");
                assert!(answer.get("allow").is_some(), "{name}: {answer}");
                assert!(
                    !called.grew_memory,
                    "{name} grew its memory deciding input {i}"
                );
            }
        }
        // The two inputs differ on what each policy checks.
        let decisions: Vec<bool> = inputs
            .iter()
            .map(|input| {
                let request = envelope(Hook::DeploymentAdmit, name, "{}", input);
                let answer = host.call(&inspected.compiled, &request).result.unwrap();
                serde_json::from_slice::<serde_json::Value>(&answer).unwrap()["allow"]
                    .as_bool()
                    .unwrap()
            })
            .collect();
        assert_eq!(decisions, [true, false], "{name}");
    }
}
