//! Who owns which hostname and path: the rules a service's routes must
//! follow before they are accepted, and the lookup an ingress does per
//! request. Pure.
//!
//! A hostname is a DNS name (lowercase letters, digits, `-`, dots between
//! labels of 1–63 characters, at most 253 in all), optionally with one
//! leading `*.` wildcard label. A path is a prefix starting with `/`.
//! Two services may share a hostname only on different paths; the same
//! `(hostname, path)` in two services is refused naming the owner.
//! A request goes to the route with the exact hostname if there is one,
//! else the most specific wildcard, and among those to the longest path
//! prefix that matches on a `/` boundary.

use std::collections::BTreeMap;

/// Why a hostname or path is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error(
        "hostname {0:?} is not a DNS name: use lowercase letters, digits and '-' in labels of 1 to 63 characters separated by dots (a leading '*.' is allowed)"
    )]
    BadHostname(String),
    #[error("path {0:?} must start with '/' and hold no spaces, '?' or '#'")]
    BadPath(String),
    #[error(
        "{host}{path} is already routed to service {owner}; choose another hostname or path, or change {owner} first"
    )]
    Taken {
        host: String,
        path: String,
        owner: String,
    },
}

/// Checks a hostname (case-insensitive; give it lowercased back).
pub fn hostname(text: &str) -> Result<String, RouteError> {
    let lower = text.trim().trim_end_matches('.').to_ascii_lowercase();
    let bad = || RouteError::BadHostname(text.to_owned());
    let rest = lower.strip_prefix("*.").unwrap_or(&lower);
    if rest.is_empty() || lower.len() > 253 {
        return Err(bad());
    }
    for label in rest.split('.') {
        let ok = (1..=63).contains(&label.len())
            && label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(bad());
        }
    }
    Ok(lower)
}

/// Checks a path prefix; `/a/` and `/a` are the same prefix (`/a`).
pub fn path_prefix(text: &str) -> Result<String, RouteError> {
    let ok = text.starts_with('/')
        && !text
            .chars()
            .any(|c| c.is_whitespace() || c == '?' || c == '#');
    if !ok {
        return Err(RouteError::BadPath(text.to_owned()));
    }
    let trimmed = text.trim_end_matches('/');
    Ok(if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    })
}

/// The routes every service holds: `(hostname, path)` → service.
pub type Claims = BTreeMap<(String, String), String>;

/// Refuses `service`'s new `(hostname, path)` pairs that another service
/// holds in `claims` (its own old ones are fine).
pub fn check_claims(
    service: &str,
    wanted: &[(String, String)],
    claims: &Claims,
) -> Result<(), Vec<RouteError>> {
    let taken: Vec<RouteError> = wanted
        .iter()
        .filter_map(|(host, path)| {
            claims
                .get(&(host.clone(), path.clone()))
                .filter(|owner| owner.as_str() != service)
                .map(|owner| RouteError::Taken {
                    host: host.clone(),
                    path: path.clone(),
                    owner: owner.clone(),
                })
        })
        .collect();
    if taken.is_empty() { Ok(()) } else { Err(taken) }
}

/// Whether `pattern` (a checked hostname, maybe `*.x`) matches `host`; a
/// wildcard matches exactly one more label.
fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .strip_suffix(suffix)
            .and_then(|label| label.strip_suffix('.'))
            .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        None => pattern == host,
    }
}

/// Whether the prefix `prefix` covers `path` on a `/` boundary.
fn path_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The service a request for `host` and `path` goes to: an exact hostname
/// before a wildcard, then the longest path prefix.
pub fn lookup<'c>(claims: &'c Claims, host: &str, path: &str) -> Option<&'c str> {
    let host = host
        .split(':')
        .next()
        .unwrap_or("")
        .trim_end_matches('.')
        .to_ascii_lowercase();
    claims
        .iter()
        .filter(|((pattern, prefix), _)| host_matches(pattern, &host) && path_matches(prefix, path))
        .max_by_key(|((pattern, prefix), _)| {
            (!pattern.starts_with("*."), pattern.len(), prefix.len())
        })
        .map(|(_, service)| service.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(rows: &[(&str, &str, &str)]) -> Claims {
        rows.iter()
            .map(|(h, p, s)| (((*h).to_owned(), (*p).to_owned()), (*s).to_owned()))
            .collect()
    }

    #[test]
    fn hostnames_are_dns_names() {
        assert_eq!(
            hostname("Web.Apps.Example.com.").unwrap(),
            "web.apps.example.com"
        );
        assert_eq!(
            hostname("*.apps.example.com").unwrap(),
            "*.apps.example.com"
        );
        assert_eq!(hostname("localhost").unwrap(), "localhost");
        for bad in [
            "",
            "*.",
            "a..b",
            "-a.com",
            "a-.com",
            "a_b.com",
            "a.*.com",
            "**.com",
            "exa mple.com",
            &format!("{}.com", "a".repeat(64)),
            &format!("{}.com", ["abcdefghi"; 26].join(".")),
        ] {
            assert_eq!(
                hostname(bad),
                Err(RouteError::BadHostname(bad.to_owned())),
                "{bad}"
            );
        }
    }

    #[test]
    fn paths_are_prefixes() {
        assert_eq!(path_prefix("/").unwrap(), "/");
        assert_eq!(path_prefix("/api/").unwrap(), "/api");
        assert_eq!(path_prefix("///").unwrap(), "/");
        for bad in ["", "api", "/a b", "/a?b", "/a#b"] {
            assert!(path_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_taken_route_names_its_owner() {
        let held = claims(&[
            ("web.example.com", "/", "web"),
            ("web.example.com", "/api", "api"),
        ]);
        let wanted = vec![
            ("web.example.com".to_owned(), "/".to_owned()),
            ("web.example.com".to_owned(), "/admin".to_owned()),
        ];
        let errors = check_claims("shop", &wanted, &held).unwrap_err();
        assert_eq!(
            errors,
            [RouteError::Taken {
                host: "web.example.com".into(),
                path: "/".into(),
                owner: "web".into()
            }]
        );
        assert_eq!(
            errors[0].to_string(),
            "web.example.com/ is already routed to service web; choose another hostname or path, or change web first"
        );
        // Its own routes are not in its way; other paths are free.
        assert_eq!(check_claims("web", &wanted, &held), Ok(()));
        assert_eq!(
            check_claims("shop", &[("web.example.com".into(), "/shop".into())], &held),
            Ok(())
        );
    }

    #[test]
    fn requests_go_to_the_most_specific_route() {
        let held = claims(&[
            ("web.example.com", "/", "web"),
            ("web.example.com", "/api", "api"),
            ("web.example.com", "/api/v2", "api2"),
            ("*.example.com", "/", "catchall"),
            ("*.example.com", "/static", "static"),
        ]);
        let cases = [
            ("web.example.com", "/", Some("web")),
            ("WEB.example.com:443", "/index.html", Some("web")),
            ("web.example.com", "/api", Some("api")),
            ("web.example.com", "/api/users", Some("api")),
            ("web.example.com", "/apiary", Some("web")),
            ("web.example.com", "/api/v2/x", Some("api2")),
            ("shop.example.com", "/cart", Some("catchall")),
            ("shop.example.com", "/static/a.css", Some("static")),
            ("a.b.example.com", "/", None),
            ("example.com", "/", None),
            ("other.org", "/", None),
        ];
        for (host, path, want) in cases {
            assert_eq!(lookup(&held, host, path), want, "{host}{path}");
        }
    }
}
