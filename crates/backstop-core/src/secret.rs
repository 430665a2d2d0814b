//! Bearer secrets (API tokens, agent tokens): kept only as their sha256 and compared by hash in
//! constant time, so neither a stolen state folder nor response timing gives one away.

use sha2::{Digest, Sha256};

/// The hex sha256 of a token, as it is stored.
#[must_use]
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

/// Whether `token` hashes to `stored_hash`, in time independent of where they differ.
#[must_use]
pub fn token_matches(token: &str, stored_hash: &str) -> bool {
    let a = hash_token(token);
    let b = stored_hash.trim().as_bytes();
    a.len() == b.len()
        && a.as_bytes()
            .iter()
            .zip(b)
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_its_own_token() {
        let stored = hash_token("bst_agent_1");
        assert!(token_matches("bst_agent_1", &stored));
        assert!(token_matches(" bst_agent_1\n", &stored));
        assert!(!token_matches("bst_agent_2", &stored));
        assert!(!token_matches("", &stored));
        assert!(!token_matches("bst_agent_1", ""));
    }
}
