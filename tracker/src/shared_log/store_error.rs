//! Why the shared store could not be used, said without its password.

/// Why the shared store could not be used.
#[derive(Debug, Clone, thiserror::Error)]
#[error("tracker store {url}: {message}")]
pub struct StoreError {
    /// The store's address, without any password.
    pub url: String,
    /// What failed.
    pub message: String,
}

/// `url` without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://…@{host}"),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(redact("redis://:hunter2@10.0.0.1:6379/0"), "redis://…@10.0.0.1:6379/0");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
