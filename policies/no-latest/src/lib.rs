//! `deployment.admit`: images are pinned to a tag or digest, never
//! `:latest` (or no tag at all, which means latest).

use argosy_policy_sdk::answer::Admit;
use argosy_policy_sdk::input::AdmitInput;
use argosy_policy_sdk::{Request, policy};

pub fn admit(request: Request<AdmitInput>) -> Admit {
    let spec = &request.input.spec;
    if spec.image_digest.is_none() && spec.image_tag.as_deref().is_none_or(|t| t == "latest") {
        return Admit::deny(format!(
            "image {} is not pinned: use a version tag or a digest, not :latest",
            spec.image
        ));
    }
    Admit::allow()
}

policy!(AdmitInput => admit);
