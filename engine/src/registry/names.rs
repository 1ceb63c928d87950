//! The names the OCI distribution API uses: repositories, references and blob digests, parsed
//! and checked before any of them reaches a URL or a file name.

use std::fmt;
use std::str::FromStr;

/// Longest repository name accepted (the distribution spec's limit for a name with its host).
const MAX_REPOSITORY: usize = 255;

/// A blob's SHA-256 digest, `sha256:` and 64 lowercase hex digits: what names a blob in a
/// registry, in the swarm's catalogue (as its file name) and on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlobDigest(pub [u8; 32]);

impl FromStr for BlobDigest {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let hex = text
            .strip_prefix("sha256:")
            .ok_or_else(|| format!("{text:?} is not a sha256 digest (`sha256:` and 64 hex digits)"))?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(format!(
                "{text:?} is not a sha256 digest (`sha256:` and 64 lowercase hex digits)"
            ));
        }
        swarm_proto::ids::parse_hex32(hex)
            .map(BlobDigest)
            .map_err(|e| e.to_string())
    }
}

impl fmt::Display for BlobDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", swarm_proto::ids::hex(&self.0))
    }
}

impl BlobDigest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> BlobDigest {
        use sha2::Digest;
        BlobDigest(sha2::Sha256::digest(bytes).into())
    }

    /// The digest of the file at `path`, read whole.
    pub fn of_file(path: &std::path::Path) -> std::io::Result<BlobDigest> {
        use sha2::Digest;
        let mut file = std::fs::File::open(path)?;
        let mut hasher = sha2::Sha256::new();
        std::io::copy(&mut file, &mut hasher)?;
        Ok(BlobDigest(hasher.finalize().into()))
    }

    /// The blob's name in the catalogue and in the mirror's folder.
    pub fn file_name(&self) -> String {
        self.to_string()
    }
}

/// Checks a repository name as the distribution spec defines it (lowercase letters and digits,
/// parts joined by `.`, `_`, `__` or dashes, path parts joined by `/`), so that it can go into an
/// upstream URL as it is.
pub fn check_repository(name: &str) -> Result<(), String> {
    let ok_part = |part: &str| {
        let bytes = part.as_bytes();
        !bytes.is_empty()
            && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
            && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
            && !part.contains("..")
            && !part.contains("___")
    };
    if name.len() <= MAX_REPOSITORY && name.split('/').all(ok_part) {
        Ok(())
    } else {
        Err(format!("{name:?} is not a repository name"))
    }
}

/// Checks a manifest reference: a tag (`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`) or a digest
/// (`algorithm:hex`).
pub fn check_reference(reference: &str) -> Result<(), String> {
    let tag = reference.len() <= 128
        && reference
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && reference
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    let digest = reference.split_once(':').is_some_and(|(algorithm, hex)| {
        !algorithm.is_empty()
            && algorithm
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'+' | b'.' | b'_' | b'-'))
            && hex.len() >= 32
            && hex.len() <= 128
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
    });
    if tag || digest {
        Ok(())
    } else {
        Err(format!("{reference:?} is neither a tag nor a digest"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_round_trip_and_refuse_anything_else() {
        let text = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(text.parse::<BlobDigest>().unwrap().to_string(), text);
        for bad in [
            "sha256:AB",
            "sha512:00",
            "sha256:../../etc/passwd",
            "",
            "sha256:sha256:",
        ] {
            assert!(bad.parse::<BlobDigest>().is_err(), "{bad}");
        }
        assert_eq!(
            BlobDigest::of(b"").to_string(),
            format!(
                "sha256:{}",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            )
        );
    }

    #[test]
    fn names_that_could_escape_a_url_path_are_refused() {
        for good in ["library/debian", "a", "my-org/app_2/x.y", "a__b"] {
            assert!(check_repository(good).is_ok(), "{good}");
        }
        for bad in ["", "../x", "a/../b", "A", "a//b", "a/", "a?b", "a%2fb", "-a", "a..b"] {
            assert!(check_repository(bad).is_err(), "{bad}");
        }
        for good in ["latest", "v1.2.3", "sha256:0123456789abcdef0123456789abcdef"] {
            assert!(check_reference(good).is_ok(), "{good}");
        }
        for bad in ["", "../x", "a/b", ".hidden", "sha256:zz", "a?b"] {
            assert!(check_reference(bad).is_err(), "{bad}");
        }
    }
}
