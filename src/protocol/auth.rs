//! Our authentication extension: a shared-secret challenge-response, spoken
//! only when both sides are configured with a secret. Stock backupcyrusd has
//! no authentication at all (anyone who knows the servername can read any
//! mailbox); it answers `AUTH` with `NO unknown command AUTH`, and a stock
//! Perl client never sends it.
//!
//! ```text
//! C: AUTH <slot> <client-nonce>        S: OK / NONCE <server-nonce> / DONE AUTH
//! C: PROOF <slot> <client-proof>       S: OK / PROOF <server-proof> / DONE PROOF
//!                                   or S: NO authentication failed   (then close)
//! ```
//! Nonces are 16 random bytes in lowercase hex. Each proof is
//! `HMAC-SHA1(secret, "mailvault-auth-v1 <role>\n<slot>\n<client-nonce>\n<server-nonce>")`
//! with role `client` or `server`, in lowercase hex. Binding both nonces and
//! the slot means a recorded exchange cannot be replayed on another
//! connection or server, and the server's proof lets the client refuse an
//! impostor. Until the client's proof is accepted the server answers every
//! other command but PING and QUIT with `NO authentication required`.
//!
//! What it does not do: there is no encryption and no integrity after the
//! handshake, so someone on the path can still read or hijack the stream.
//! Run it on a trusted network or inside a tunnel, as backupcyrusd demands.

use std::io::{self, Read};

use sha1::{Digest, Sha1};

const BLOCK: usize = 64;
const NONCE_BYTES: usize = 16;

/// HMAC-SHA1 (RFC 2104).
pub fn hmac_sha1(key: &[u8], message: &[u8]) -> [u8; 20] {
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..20].copy_from_slice(&Sha1::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha1::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha1::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// Who is proving knowledge of the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

/// The proof `role` sends for this exchange, lowercase hex.
pub fn proof(
    secret: &[u8],
    role: Role,
    slot: &str,
    client_nonce: &str,
    server_nonce: &str,
) -> String {
    let role = match role {
        Role::Client => "client",
        Role::Server => "server",
    };
    let message = format!("mailvault-auth-v1 {role}\n{slot}\n{client_nonce}\n{server_nonce}");
    hex::encode(hmac_sha1(secret, message.as_bytes()))
}

/// Compare without an early exit, so timing does not reveal how much of a
/// guessed proof was right.
pub fn proofs_equal(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A fresh nonce from the kernel's random source.
pub fn new_nonce() -> io::Result<String> {
    let mut bytes = [0u8; NONCE_BYTES];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// A nonce from the peer must look like one of ours; anything else is refused
/// before it is used.
pub fn is_valid_nonce(nonce: &str) -> bool {
    nonce.len() == NONCE_BYTES * 2 && nonce.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha1_matches_rfc_2202() {
        assert_eq!(
            hex::encode(hmac_sha1(&[0x0b; 20], b"Hi There")),
            "b617318655057264e28bc0b6fb378c8ef146be00"
        );
        assert_eq!(
            hex::encode(hmac_sha1(b"Jefe", b"what do ya want for nothing?")),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        assert_eq!(
            hex::encode(hmac_sha1(
                &[0xaa; 80],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "aa4ae5e15272d00e95705637ce8a3b55ed402112"
        );
    }

    #[test]
    fn proofs_differ_by_role_slot_and_nonces() {
        let p = |role, slot, c, s| proof(b"secret", role, slot, c, s);
        let base = p(Role::Client, "slot1", "aa", "bb");
        assert_ne!(base, p(Role::Server, "slot1", "aa", "bb"));
        assert_ne!(base, p(Role::Client, "slot2", "aa", "bb"));
        assert_ne!(base, p(Role::Client, "slot1", "ab", "bb"));
        assert_ne!(base, p(Role::Client, "slot1", "aa", "bc"));
        assert_ne!(base, proof(b"other", Role::Client, "slot1", "aa", "bb"));
        assert!(proofs_equal(&base, &p(Role::Client, "slot1", "aa", "bb")));
        assert!(!proofs_equal(&base, &base[1..]));
    }

    #[test]
    fn nonces_are_fresh_and_well_formed() {
        let a = new_nonce().unwrap();
        let b = new_nonce().unwrap();
        assert!(is_valid_nonce(&a) && is_valid_nonce(&b));
        assert_ne!(a, b);
        assert!(!is_valid_nonce("xyz"));
        assert!(!is_valid_nonce(&"g".repeat(32)));
    }
}
