//! `policy`: the admission hook's cost per decision — the example
//! `require-limits` policy run by the control plane's own Wasm host
//! (instantiation from the pre-instantiated module in a pooled slot, the
//! call, reading and checking the answer) — against the same rule written
//! in Rego and evaluated by `regorus`, in the same run on the same inputs.
//! Prints p50/p99 per decision and decisions per second (one thread).

use anyhow::{Context, ensure};
use argosy::deploy::spec::{Format, parse};
use argosy::policy::Hook;
use argosy::policy::decision::{AdmitAnswer, Outcome, combine_admission, parse_answer};
use argosy::policy::input::{AdmitInput, Facts, Now, envelope, spec_view};
use argosy::policy::runtime::PolicyHost;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Decisions measured per engine (after a warm-up of a tenth as many).
    #[arg(long, default_value_t = 20_000)]
    decisions: usize,
    /// The require-limits example policy, built with `cargo build
    /// --manifest-path policies/Cargo.toml --target wasm32-unknown-unknown
    /// --release` (default: under $CARGO_TARGET_DIR or target/).
    #[arg(long)]
    module: Option<PathBuf>,
}

/// The same rule as `policies/require-limits` (without defaults).
const REGO: &str = r#"
package argosy.admit

import rego.v1

deny contains "set resources.memory: every service needs a memory limit" if {
    input.spec.resources.memory_bytes == null
}

deny contains "set resources.cpu: every service needs a CPU limit" if {
    input.spec.resources.cpu_millis == null
}
"#;

fn default_module() -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    target.join("policies/wasm32-unknown-unknown/release/policy_require_limits.wasm")
}

/// Two admission inputs as JSON: one compliant, one missing both limits.
fn inputs() -> anyhow::Result<Vec<String>> {
    let specs = [
        "name: web\nimage: registry.example/web:1.4.2\nreplicas: 3\nports: [\"8080:80\"]\nenv: {RUST_LOG: info}\nresources: {cpu: 0.5, memory: 256MiB}\nhealth_check: {http: {path: /healthz, port: 80}}\n",
        "name: worker\nimage: registry.example/worker:2.0\nreplicas: 2\nenv: {QUEUE: jobs}\n",
    ];
    specs
        .iter()
        .map(|text| {
            let spec = parse(text, Format::Yaml).map_err(|e| anyhow::anyhow!("{e}"))?;
            let input = AdmitInput {
                spec: spec_view(&spec, None),
                document: serde_json::Value::Null,
                format: "yaml",
                actor: "token:bench".to_owned(),
                now: Now::at(1_763_733_600_000),
                dry_run: false,
                service: None,
                facts: Facts::default(),
            };
            Ok(serde_json::to_string(&input)?)
        })
        .collect()
}

struct Measured {
    engine: &'static str,
    per_decision: Vec<Duration>,
    total: Duration,
}

impl Measured {
    fn row(&mut self) -> String {
        self.per_decision.sort();
        let at = |q: f64| {
            let i = ((self.per_decision.len() as f64 - 1.0) * q).round() as usize;
            self.per_decision[i].as_secs_f64() * 1e6
        };
        let rate = self.per_decision.len() as f64 / self.total.as_secs_f64();
        format!(
            "| {} | {:.1} | {:.1} | {:.0} |",
            self.engine,
            at(0.50),
            at(0.99),
            rate
        )
    }
}

fn measure(
    engine: &'static str,
    decisions: usize,
    inputs: &[String],
    mut decide: impl FnMut(&str) -> anyhow::Result<bool>,
) -> anyhow::Result<Measured> {
    for i in 0..decisions / 10 {
        decide(&inputs[i % inputs.len()])?;
    }
    let mut per_decision = Vec::with_capacity(decisions);
    let started = Instant::now();
    for i in 0..decisions {
        let input = &inputs[i % inputs.len()];
        let one = Instant::now();
        let admitted = decide(input)?;
        per_decision.push(one.elapsed());
        ensure!(
            admitted == (i % inputs.len() == 0),
            "{engine} decided wrongly on input {}",
            i % inputs.len()
        );
    }
    Ok(Measured {
        engine,
        per_decision,
        total: started.elapsed(),
    })
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let module = args.module.unwrap_or_else(default_module);
    let wasm = std::fs::read(&module).with_context(|| {
        format!(
            "cannot read {}: build the example policies first (cargo build --manifest-path policies/Cargo.toml --target wasm32-unknown-unknown --release)",
            module.display()
        )
    })?;
    let inputs = inputs()?;
    let host = PolicyHost::new(argosy::policy::Limits::default())?;
    let compile_started = Instant::now();
    let inspected = host.inspect(&wasm)?;
    let compile = compile_started.elapsed();

    let mut wasm_run = measure(
        "Wasm (wasmtime 48, pooling, fresh instance per decision)",
        args.decisions,
        &inputs,
        |input| {
            let request = envelope(Hook::DeploymentAdmit, "require-limits", "{}", input);
            let called = host.call(&inspected.compiled, &request);
            let decision = combine_admission(vec![Outcome {
                policy: "require-limits".to_owned(),
                result: called
                    .result
                    .and_then(|bytes| parse_answer::<AdmitAnswer>(&bytes)),
            }]);
            Ok(decision.admitted())
        },
    )?;

    let mut rego = regorus::Engine::new();
    rego.add_policy("require_limits.rego".to_owned(), REGO.to_owned())?;
    let mut rego_run = measure(
        "Rego (regorus 0.14, same rule)",
        args.decisions,
        &inputs,
        |input| {
            rego.set_input_json(input)?;
            let deny = rego.eval_rule("data.argosy.admit.deny".to_owned())?;
            Ok(deny.as_set().map(|set| set.is_empty()).unwrap_or(true))
        },
    )?;

    println!(
        "Admission decisions (`deployment.admit`, require resource limits), {} decisions each, one thread; module {} bytes, compiled once in {:.0} ms\n",
        args.decisions,
        wasm.len(),
        compile.as_secs_f64() * 1e3
    );
    println!("| engine | p50 µs/decision | p99 µs/decision | decisions/s |");
    println!("| --- | ---: | ---: | ---: |");
    println!("{}", wasm_run.row());
    println!("{}", rego_run.row());
    Ok(())
}
