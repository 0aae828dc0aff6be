//! What deployments ask the secret store: the newest version of secrets and
//! whether a pinned version is kept. A trait, so that the controller does
//! not depend on how secrets are kept (the `SecretVault` implements it,
//! tests use a map), plus the I/O half of resolving a spec's references —
//! the decision itself is [`secret_refs::resolve`].

use super::model::ServiceSpec;
use super::secret_refs::{self, ResolvedVersions, UnresolvedSecrets};
use futures_util::future::BoxFuture;
use std::collections::{BTreeMap, BTreeSet};

/// Why the secret store could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// No secret has these names.
    #[error("no secret named {}", .0.join(", "))]
    Missing(Vec<String>),
    /// The store could not be read; the message says why (never a value).
    #[error("{0}")]
    Unavailable(String),
}

/// The secret store as deployments see it: names and versions, no values.
pub trait SecretCatalog: Send + Sync {
    /// The newest version of every name, failing with
    /// [`CatalogError::Missing`] naming every name that does not exist.
    fn latest_versions<'a>(
        &'a self,
        names: &'a BTreeSet<String>,
    ) -> BoxFuture<'a, Result<BTreeMap<String, u32>, CatalogError>>;

    /// Whether `version` of `name` is kept.
    fn version_exists<'a>(
        &'a self,
        name: &'a str,
        version: u32,
    ) -> BoxFuture<'a, Result<bool, CatalogError>>;

    /// The value of `version` of `name`, for the checks `apply` makes on
    /// what a spec uses (a route's certificate); never logged.
    fn value<'a>(
        &'a self,
        name: &'a str,
        version: u32,
    ) -> BoxFuture<'a, Result<zeroize::Zeroizing<Vec<u8>>, CatalogError>>;
}

impl SecretCatalog for crate::crypto::SecretVault {
    fn latest_versions<'a>(
        &'a self,
        names: &'a BTreeSet<String>,
    ) -> BoxFuture<'a, Result<BTreeMap<String, u32>, CatalogError>> {
        Box::pin(async move {
            crate::crypto::SecretVault::latest_versions(self, names)
                .await
                .map_err(catalog_error)
        })
    }

    fn version_exists<'a>(
        &'a self,
        name: &'a str,
        version: u32,
    ) -> BoxFuture<'a, Result<bool, CatalogError>> {
        Box::pin(async move {
            crate::crypto::SecretVault::version_exists(self, name, version)
                .await
                .map_err(catalog_error)
        })
    }

    fn value<'a>(
        &'a self,
        name: &'a str,
        version: u32,
    ) -> BoxFuture<'a, Result<zeroize::Zeroizing<Vec<u8>>, CatalogError>> {
        Box::pin(async move {
            crate::crypto::SecretVault::value(self, name, version)
                .await
                .map(|value| value.bytes)
                .map_err(catalog_error)
        })
    }
}

fn catalog_error(error: crate::crypto::SecretError) -> CatalogError {
    match error {
        crate::crypto::SecretError::Missing(names) => CatalogError::Missing(names),
        other => CatalogError::Unavailable(other.to_string()),
    }
}

/// Why a spec's secrets could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Unresolved(#[from] UnresolvedSecrets),
    #[error("cannot look up the secrets the spec references: {0}; try again")]
    Unavailable(String),
}

/// The newest version of each of `names` that exists (missing names are
/// left out).
pub async fn latest_existing(
    catalog: &dyn SecretCatalog,
    names: &BTreeSet<String>,
) -> Result<BTreeMap<String, u32>, CatalogError> {
    let mut asking = names.clone();
    // A secret may be deleted between two questions: ask at most twice more.
    for _ in 0..3 {
        if asking.is_empty() {
            return Ok(BTreeMap::new());
        }
        match catalog.latest_versions(&asking).await {
            Ok(latest) => return Ok(latest),
            Err(CatalogError::Missing(missing)) => {
                for name in missing {
                    asking.remove(&name);
                }
            }
            Err(error) => return Err(error),
        }
    }
    Err(CatalogError::Unavailable(
        "the secrets changed while they were being looked up".to_owned(),
    ))
}

/// Resolves every secret reference of `spec`: the newest version of the
/// followed names, and a check that every pinned version is kept. Fails
/// naming every missing secret and version.
pub async fn resolve(
    catalog: &dyn SecretCatalog,
    spec: &ServiceSpec,
) -> Result<ResolvedVersions, ResolveError> {
    let names = secret_refs::referenced_names(spec);
    if names.is_empty() {
        return Ok(ResolvedVersions::default());
    }
    let unavailable = |e: CatalogError| ResolveError::Unavailable(e.to_string());
    let latest = latest_existing(catalog, &names)
        .await
        .map_err(unavailable)?;
    let mut absent_pins = BTreeSet::new();
    for pin in secret_refs::pinned_versions(spec) {
        if latest.contains_key(&pin.name)
            && !catalog
                .version_exists(&pin.name, pin.version)
                .await
                .map_err(unavailable)?
        {
            absent_pins.insert(pin);
        }
    }
    Ok(secret_refs::resolve(spec, &latest, &absent_pins)?)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::deploy::spec::{Format, parse};
    use std::sync::Mutex;

    /// A catalog over a map of name → kept versions (ascending).
    #[derive(Default)]
    pub(crate) struct MapCatalog {
        pub(crate) secrets: Mutex<BTreeMap<String, Vec<u32>>>,
        pub(crate) down: Mutex<bool>,
    }

    impl MapCatalog {
        pub(crate) fn with(secrets: &[(&str, &[u32])]) -> Self {
            let catalog = Self::default();
            *catalog.secrets.lock().unwrap() = secrets
                .iter()
                .map(|(n, v)| ((*n).to_owned(), v.to_vec()))
                .collect();
            catalog
        }
    }

    impl SecretCatalog for MapCatalog {
        fn latest_versions<'a>(
            &'a self,
            names: &'a BTreeSet<String>,
        ) -> BoxFuture<'a, Result<BTreeMap<String, u32>, CatalogError>> {
            Box::pin(async move {
                if *self.down.lock().unwrap() {
                    return Err(CatalogError::Unavailable("the store is down".into()));
                }
                let secrets = self.secrets.lock().unwrap();
                let missing: Vec<String> = names
                    .iter()
                    .filter(|n| !secrets.contains_key(*n))
                    .cloned()
                    .collect();
                if !missing.is_empty() {
                    return Err(CatalogError::Missing(missing));
                }
                Ok(names
                    .iter()
                    .map(|n| (n.clone(), *secrets[n].last().unwrap_or(&0)))
                    .collect())
            })
        }

        fn version_exists<'a>(
            &'a self,
            name: &'a str,
            version: u32,
        ) -> BoxFuture<'a, Result<bool, CatalogError>> {
            Box::pin(async move {
                Ok(self
                    .secrets
                    .lock()
                    .unwrap()
                    .get(name)
                    .is_some_and(|v| v.contains(&version)))
            })
        }

        fn value<'a>(
            &'a self,
            name: &'a str,
            version: u32,
        ) -> BoxFuture<'a, Result<zeroize::Zeroizing<Vec<u8>>, CatalogError>> {
            Box::pin(async move {
                Err(CatalogError::Unavailable(format!(
                    "this test catalog keeps no values ({name}@{version})"
                )))
            })
        }
    }

    fn spec(text: &str) -> ServiceSpec {
        parse(&format!("name: web\nimage: nginx\n{text}"), Format::Yaml).unwrap()
    }

    #[tokio::test]
    async fn resolves_followed_names_and_checks_pins() {
        let catalog = MapCatalog::with(&[("crm/db", &[1, 2, 4]), ("crm/api", &[2, 3])]);
        let spec =
            spec("env:\n  DB: {secret: crm/db}\n  API: {secret: crm/api@3}\nsecrets: [crm/db@2]\n");
        let resolved = resolve(&catalog, &spec).await.unwrap();
        assert_eq!(resolved.0, BTreeMap::from([("crm/db".to_owned(), 4)]));
    }

    #[tokio::test]
    async fn every_missing_secret_and_pin_is_reported_at_once() {
        let catalog = MapCatalog::with(&[("crm/db", &[4]), ("crm/api", &[5])]);
        let spec = spec(
            "env:\n  DB: {secret: crm/db@3}\n  API: {secret: crm/api@3}\n  X: {secret: crm/gone}\nsecrets: [crm/nope]\n",
        );
        let error = resolve(&catalog, &spec).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "service web references version 3 of secret crm/api, which does not exist; \
             `argosy secret versions crm/api` lists the versions kept\n\
             service web references version 3 of secret crm/db, which does not exist; \
             `argosy secret versions crm/db` lists the versions kept\n\
             service web references secret crm/gone, which does not exist; create it with \
             `argosy secret set crm/gone --from-file FILE`\n\
             service web references secret crm/nope, which does not exist; create it with \
             `argosy secret set crm/nope --from-file FILE`"
        );
    }

    #[tokio::test]
    async fn no_secrets_asks_nothing_and_a_down_store_says_so() {
        let catalog = MapCatalog::default();
        *catalog.down.lock().unwrap() = true;
        assert_eq!(
            resolve(&catalog, &spec("")).await.unwrap(),
            ResolvedVersions::default()
        );
        let error = resolve(&catalog, &spec("env:\n  DB: {secret: crm/db}\n"))
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot look up the secrets the spec references: the store is down; try again"
        );
    }
}
