//! Bearer secrets the control plane hands out (API tokens, join tokens):
//! how they are generated, parsed and checked against the stored hash.
//!
//! A secret is shown once; only its SHA-256 is stored. Tokens carry a public
//! id so the store is looked up by id and the hash compared in constant time.

use rand::Rng;
use sha2::{Digest, Sha256};

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
/// Prefix of every API token, so leaked tokens are easy to find by scanners.
pub const API_TOKEN_PREFIX: &str = "argosy_";

/// A random lowercase alphanumeric string of `len` characters.
pub fn random_id(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// A freshly minted token: its id, the full text to show once, and the hash
/// to store.
#[derive(Clone)]
pub struct MintedToken {
    pub id: String,
    pub text: String,
    pub secret_hash: String,
}

/// Hex SHA-256 of a token secret.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `secret` hashes to `stored_hash`, compared in constant time.
pub fn secret_matches(secret: &str, stored_hash: &str) -> bool {
    let computed = hash_secret(secret);
    let (a, b) = (computed.as_bytes(), stored_hash.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A new API token `argosy_<id>_<secret>`.
pub fn mint_api_token() -> MintedToken {
    let id = random_id(12);
    let secret = random_id(40);
    MintedToken {
        text: format!("{API_TOKEN_PREFIX}{id}_{secret}"),
        secret_hash: hash_secret(&secret),
        id,
    }
}

/// A new join token `<id>.<secret>`.
pub fn mint_join_token() -> MintedToken {
    let id = random_id(10);
    let secret = random_id(32);
    MintedToken {
        text: format!("{id}.{secret}"),
        secret_hash: hash_secret(&secret),
        id,
    }
}

/// Splits `argosy_<id>_<secret>` into id and secret.
pub fn parse_api_token(text: &str) -> Option<(&str, &str)> {
    let rest = text.trim().strip_prefix(API_TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (!id.is_empty() && !secret.is_empty()).then_some((id, secret))
}

/// Splits `<id>.<secret>` into id and secret.
pub fn parse_join_token(text: &str) -> Option<(&str, &str)> {
    let (id, secret) = text.trim().split_once('.')?;
    (!id.is_empty() && !secret.is_empty()).then_some((id, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_tokens_round_trip_and_verify() {
        let token = mint_api_token();
        let (id, secret) = parse_api_token(&token.text).unwrap();
        assert_eq!(id, token.id);
        assert!(secret_matches(secret, &token.secret_hash));
        assert!(!secret_matches("wrong", &token.secret_hash));
        assert!(!token.secret_hash.contains(secret));
    }

    #[test]
    fn join_tokens_round_trip_and_verify() {
        let token = mint_join_token();
        let (id, secret) = parse_join_token(&token.text).unwrap();
        assert_eq!(id, token.id);
        assert!(secret_matches(secret, &token.secret_hash));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for text in [
            "",
            "argosy_",
            "argosy_abc",
            "argosy__x",
            "argosy_abc_",
            "other_abc_def",
        ] {
            assert_eq!(parse_api_token(text), None, "{text}");
        }
        for text in ["", "abc", ".x", "x."] {
            assert_eq!(parse_join_token(text), None, "{text}");
        }
    }

    #[test]
    fn minted_tokens_differ() {
        assert_ne!(mint_api_token().text, mint_api_token().text);
        assert_eq!(random_id(12).len(), 12);
    }
}
