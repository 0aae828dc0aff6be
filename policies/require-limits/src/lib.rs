//! `deployment.admit`: a service must set its memory and CPU limits.
//!
//! Configuration: `{"default_memory": "256MiB"}` fills a missing memory
//! limit in instead of refusing (the stored revision gets it);
//! `{"require_cpu": false}` lets CPU go unlimited.

use argosy_policy_sdk::answer::Admit;
use argosy_policy_sdk::input::AdmitInput;
use argosy_policy_sdk::{Request, policy};

pub fn admit(request: Request<AdmitInput>) -> Admit {
    let default_memory: Option<String> = request.config("default_memory", None);
    let require_cpu: bool = request.config("require_cpu", true);
    let resources = request.input.spec.resources;
    let mut answer = Admit::allow();
    if resources.memory_bytes.is_none() {
        answer = match default_memory {
            Some(memory) => answer
                .warn(format!("no memory limit set: {memory} filled in"))
                .default_value("resources.memory", memory),
            None => answer.reason("set resources.memory: every service needs a memory limit"),
        };
    }
    if require_cpu && resources.cpu_millis.is_none() {
        answer = answer.reason("set resources.cpu: every service needs a CPU limit");
    }
    answer
}

policy!(AdmitInput => admit);
