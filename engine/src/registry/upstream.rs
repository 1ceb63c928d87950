//! Requests to the upstream registry: image manifests (small, asked each time) and what a blob
//! weighs. Blobs themselves are read by [`crate::origin`].
//!
//! Anonymous pulls only: an upstream that asks for a token (`401` with a `Bearer` challenge,
//! as Docker Hub does) is refused with a message that says so.

use futures_util::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::StatusCode;

use super::names::{check_reference, check_repository, BlobDigest};
use crate::error::{Error, Result};

/// Largest image manifest or index taken from the upstream (the distribution spec asks
/// registries to take at least 4 MiB).
const MAX_MANIFEST: usize = 4 * 1024 * 1024;

/// The registry mirrored.
pub(super) struct Upstream {
    /// Its URL without a trailing `/`.
    base: String,
    client: reqwest::Client,
}

/// An image manifest (or index) as the upstream sent it.
#[derive(Debug, Clone)]
pub struct ImageManifest {
    /// Its bytes, as they were signed and digested.
    pub body: bytes::Bytes,
    /// Its media type.
    pub media_type: String,
    /// Its digest, computed here.
    pub digest: BlobDigest,
}

impl Upstream {
    pub(super) fn new(url: &str) -> Result<Upstream> {
        let parsed = reqwest::Url::parse(url).map_err(|e| upstream_error(url, format!("not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.query().is_some() {
            return Err(upstream_error(
                url,
                "give the registry's http:// or https:// URL, without a query (https://registry.example.com)".into(),
            ));
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("swarm-registry/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| upstream_error(url, e.to_string()))?;
        Ok(Upstream {
            base: parsed.as_str().trim_end_matches('/').to_owned(),
            client,
        })
    }

    /// Where the upstream serves blob `digest` of `repository`.
    pub(super) fn blob_url(&self, repository: &str, digest: BlobDigest) -> Result<reqwest::Url> {
        check_repository(repository).map_err(Error::NotFound)?;
        self.url(&format!("/v2/{repository}/blobs/{digest}"))
    }

    /// The size of blob `digest`, as the upstream tells it (`HEAD`).
    pub(super) async fn blob_size(&self, repository: &str, digest: BlobDigest) -> Result<u64> {
        let url = self.blob_url(repository, digest)?;
        let response = self.send(self.client.head(url.clone()), &url).await?;
        response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .ok_or_else(|| upstream_error(url.as_str(), "it gave no size for the blob".into()))
    }

    /// Manifest `reference` (a tag or a digest) of `repository`, asked for with the client's
    /// `Accept` header. One asked for by digest is checked against it.
    pub(super) async fn manifest(
        &self,
        repository: &str,
        reference: &str,
        accept: Option<&str>,
    ) -> Result<ImageManifest> {
        check_repository(repository).map_err(Error::NotFound)?;
        check_reference(reference).map_err(Error::NotFound)?;
        let url = self.url(&format!("/v2/{repository}/manifests/{reference}"))?;
        let mut request = self.client.get(url.clone());
        if let Some(accept) = accept {
            request = request.header(ACCEPT, accept);
        }
        let response = self.send(request, &url).await?;
        let media_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/vnd.oci.image.manifest.v1+json")
            .to_owned();
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(piece) = stream.next().await {
            let piece = piece.map_err(|e| upstream_error(url.as_str(), format!("the transfer broke off: {e}")))?;
            if body.len() + piece.len() > MAX_MANIFEST {
                let message = format!("the manifest is larger than {} MiB", MAX_MANIFEST >> 20);
                return Err(upstream_error(url.as_str(), message));
            }
            body.extend_from_slice(&piece);
        }
        let digest = BlobDigest::of(&body);
        if let Ok(asked) = reference.parse::<BlobDigest>() {
            if asked != digest {
                let message = format!("it sent a manifest whose digest is {digest}, not {asked}: refused");
                return Err(upstream_error(url.as_str(), message));
            }
        }
        Ok(ImageManifest {
            body: body.into(),
            media_type,
            digest,
        })
    }

    fn url(&self, path: &str) -> Result<reqwest::Url> {
        let url = format!("{}{path}", self.base);
        reqwest::Url::parse(&url).map_err(|e| upstream_error(&url, e.to_string()))
    }

    async fn send(&self, request: reqwest::RequestBuilder, url: &reqwest::Url) -> Result<reqwest::Response> {
        let response = request.send().await.map_err(|e| {
            upstream_error(
                url.as_str(),
                format!("no answer ({e}); is the registry up, and --upstream right?"),
            )
        })?;
        match response.status() {
            StatusCode::OK => Ok(response),
            StatusCode::NOT_FOUND => Err(Error::NotFound(format!("the upstream has no {}", url.path()))),
            StatusCode::UNAUTHORIZED => Err(upstream_error(
                url.as_str(),
                "it asks for credentials; the mirror pulls anonymously only (mirror a registry that allows it)".into(),
            )),
            status => Err(upstream_error(url.as_str(), format!("it answered {status}"))),
        }
    }
}

fn upstream_error(url: &str, message: String) -> Error {
    Error::Origin {
        url: url.to_owned(),
        message,
    }
}
