//! Files that start on an HTTP(S) server, an *origin*: read from it once, hashed into a
//! manifest as they stream in, kept in the folder the user named, and seeded from there like
//! any other file. Fetchers see an ordinary file and verify it as always.
//!
//! Why a copy on disk, not chunks served from the origin with range requests: with a copy,
//! the origin is read once whatever the swarm does (churn, slow peers, many seeders), the
//! chunks are checked as any seeded file's are ([`crate::trust`]), and the origin may change
//! or go away without the swarm serving a mix of two versions. The price is the disk space of
//! one copy on the seeding host.
//!
//! On a later start, the origin is asked whether the file changed since (`If-Modified-Since`
//! with the copy's modification time, which is set to the origin's `Last-Modified`): `304 Not
//! Modified` keeps the copy without reading anything; an origin that cannot tell (no
//! `Last-Modified`) is read again, and the copy kept if it holds the same bytes. A copy is never
//! replaced: if the origin has a new version, the old copy must be moved away first (it may be
//! someone's file by then).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use futures_util::StreamExt;
use reqwest::header::{CONTENT_LENGTH, IF_MODIFIED_SINCE, LAST_MODIFIED};
use reqwest::StatusCode;
use swarm_proto::hashing::StreamHasher;
use swarm_proto::manifest::{chunk_size_for, MAX_CHUNKS};
use swarm_proto::{FileMeta, Manifest};
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result};
use crate::node::Node;
use crate::out_dir::{partial_name_for, Dir, Entry};
use crate::progress::Progress;

/// What reading a file from its origin did.
#[derive(Debug, Clone)]
pub struct FromOrigin {
    /// The copy on disk.
    pub path: PathBuf,
    /// Bytes read from the origin: the file's size, or 0 when the copy was kept.
    pub bytes_read: u64,
    /// The copy was already there and the origin said it had not changed.
    pub unchanged: bool,
    /// The new copy's manifest (`None` when the copy was kept).
    pub manifest: Option<Manifest>,
}

/// Reads `url` into `dir` (as the last part of the URL's path names it), hashing it as it
/// streams in with `chunk_size` as the preferred chunk size, and remembers the manifest so that
/// `node`'s next scan of `dir` shares it without reading it again. `progress` counts the bytes
/// read.
pub async fn read_from_origin(
    node: &Node,
    url: &str,
    dir: &Path,
    chunk_size: u32,
    progress: &Progress,
) -> Result<FromOrigin> {
    let (url, name) = checked_url(url)?;
    read_named(node, &url, dir, &name, chunk_size, progress, None).await
}

/// [`read_from_origin`] under the name `name` (one path part), with the content's SHA-256
/// checked against `sha256` if given, before the copy takes its name: a registry's blob, whose
/// digest the origin promised. The copy's manifest is in [`FromOrigin::manifest`].
pub(crate) async fn read_named(
    node: &Node,
    url: &reqwest::Url,
    dir: &Path,
    name: &str,
    chunk_size: u32,
    progress: &Progress,
    sha256: Option<[u8; 32]>,
) -> Result<FromOrigin> {
    let dir = Dir::open_root(dir)?;
    let path = dir.join(name);
    let copy_time = match dir.entry(name)? {
        Entry::Missing => None,
        Entry::File(metadata) => Some(metadata.modified().map_err(|e| Error::io(&path, e))?),
        Entry::Link | Entry::Other => {
            return Err(Error::Unsafe {
                path,
                why: "is in the way of the origin's file and is not a regular file. Move it away and run again".into(),
            })
        }
    };
    let unchanged = |bytes_read| FromOrigin {
        path: path.clone(),
        bytes_read,
        unchanged: true,
        manifest: None,
    };
    let Some(response) = ask(url, copy_time).await? else {
        return Ok(unchanged(0));
    };
    let modified = response
        .headers()
        .get(LAST_MODIFIED)
        .and_then(|v| httpdate::parse_http_date(v.to_str().ok()?).ok());
    let partial = partial_name_for(name);
    let written = Written {
        dir: &dir,
        partial: &partial,
        name,
        url,
        modified,
        sha256,
    };
    let manifest = written.write(response, chunk_size, progress).await?;
    if copy_time.is_some() {
        // The origin could not tell whether the file changed (it sends no Last-Modified, or
        // ignores If-Modified-Since): the copy stays if it holds the same bytes, else it is
        // left alone and the new version refused.
        let same = same_content(&path, &manifest).await;
        let _ = dir.remove(&partial);
        return match same? {
            true => Ok(unchanged(progress.done())),
            false => Err(origin_error(
                url.as_str(),
                format!(
                    "{} is there already, and the origin has another version: move the copy away and run again",
                    path.display()
                ),
            )),
        };
    }
    dir.rename(&partial, name, false)?;
    let meta = FileMeta {
        modified_ns: swarm_proto::meta::nanos_since_epoch(modified.unwrap_or_else(SystemTime::now)),
        replaces: None,
    };
    node.remember_hashed(&path, &manifest, meta).await?;
    crate::telemetry::origin_read(&manifest.id(), progress.done());
    node.note_origin_read(manifest.id(), progress.done());
    Ok(FromOrigin {
        path,
        bytes_read: progress.done(),
        unchanged: false,
        manifest: Some(manifest),
    })
}

/// `url` parsed, if it is an http:// or https:// URL of a file, and the name of that file.
fn checked_url(url: &str) -> Result<(reqwest::Url, String)> {
    let url = reqwest::Url::parse(url).map_err(|e| origin_error(url, format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(origin_error(
            url.as_str(),
            "only http:// and https:// URLs are read".into(),
        ));
    }
    let name = file_name_of(&url)?;
    Ok((url, name))
}

/// Asks the origin for `url`, unless it has not changed since `copy_time` (if there is a copy):
/// the response to read, or `None` for "not modified".
async fn ask(url: &reqwest::Url, copy_time: Option<SystemTime>) -> Result<Option<reqwest::Response>> {
    let client = reqwest::Client::builder()
        .user_agent(concat!("swarm/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| origin_error(url.as_str(), e.to_string()))?;
    let mut request = client.get(url.clone());
    if let Some(time) = copy_time {
        request = request.header(IF_MODIFIED_SINCE, httpdate::fmt_http_date(time));
    }
    let response = request.send().await.map_err(|e| {
        origin_error(
            url.as_str(),
            format!("no answer ({}); is the server up, and the URL right?", causes(&e)),
        )
    })?;
    match response.status() {
        StatusCode::NOT_MODIFIED if copy_time.is_some() => Ok(None),
        StatusCode::OK => Ok(Some(response)),
        status => Err(origin_error(url.as_str(), format!("the server answered {status}"))),
    }
}

/// Where and how the body of an origin's response is written.
struct Written<'a> {
    dir: &'a Dir,
    /// The partial file's name in `dir`.
    partial: &'a str,
    /// The copy's name (the manifest's).
    name: &'a str,
    url: &'a reqwest::Url,
    /// The origin's time for the file, given to the copy.
    modified: Option<SystemTime>,
    /// The SHA-256 the content must have.
    sha256: Option<[u8; 32]>,
}

impl Written<'_> {
    /// Writes the body of `response` as the partial file (whole, synced, and given the origin's
    /// time), and returns its manifest, hashed on the way in.
    async fn write(&self, response: reqwest::Response, chunk_size: u32, progress: &Progress) -> Result<Manifest> {
        let (dir, partial, url) = (self.dir, self.partial, self.url);
        let announced = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let chunk_size = announced.map_or(chunk_size, |size| chunk_size_for(size, chunk_size));
        progress.set_total(announced.unwrap_or(0));
        if let Entry::File(_) = dir.entry(partial)? {
            dir.remove(partial)?;
        }
        let (file, _) = dir.open_or_create(partial)?;
        let partial_path = dir.join(partial);
        let written = stream_into(
            response,
            file,
            chunk_size,
            progress,
            url.as_str(),
            &partial_path,
            self.sha256.is_some(),
        )
        .await;
        let (file, hashes, sha256) = match written {
            Ok((file, hashes, sha256)) if announced.is_none_or(|a| a == hashes.size()) => (file, hashes, sha256),
            Ok((_, hashes, _)) => {
                let _ = dir.remove(partial);
                let (got, announced) = (hashes.size(), announced.unwrap_or_default());
                let message = format!("it sent {got} of the {announced} bytes it announced; run again");
                return Err(origin_error(url.as_str(), message));
            }
            Err(e) => {
                let _ = dir.remove(partial);
                return Err(e);
            }
        };
        if let Some((promised, got)) = self.sha256.zip(sha256).filter(|(promised, got)| promised != got) {
            let _ = dir.remove(partial);
            let message = format!(
                "its content has the SHA-256 {}, not the {} it was asked for: the origin is broken or lies",
                swarm_proto::ids::hex(&got),
                swarm_proto::ids::hex(&promised)
            );
            return Err(origin_error(url.as_str(), message));
        }
        // With no length announced, a file may outgrow the chunk size: then it is hashed again.
        let fits = hashes.size().div_ceil(u64::from(chunk_size)) <= u64::from(MAX_CHUNKS);
        let streamed = fits.then(|| hashes.finish());
        if let Some(time) = self.modified {
            file.set_modified(time).map_err(|e| Error::io(&partial_path, e))?;
        }
        tokio::task::spawn_blocking(move || file.sync_all())
            .await?
            .map_err(|e| Error::io(&partial_path, e))?;
        let name = self.name;
        let manifest = match streamed {
            Some(hashes) => Manifest::from_hashes(name, chunk_size, hashes)
                .map_err(|source| Error::Manifest { file: None, source })?,
            None => Manifest::from_file(&partial_path, name, chunk_size)?,
        };
        Ok(manifest)
    }
}

/// Does the file at `path` hold the bytes `manifest` describes? (Its global hash and size.)
async fn same_content(path: &Path, manifest: &Manifest) -> Result<bool> {
    let (path, chunk_size) = (path.to_owned(), manifest.chunk_size);
    let hashes = tokio::task::spawn_blocking(move || {
        swarm_proto::hashing::hash_file(&path, chunk_size).map_err(|e| Error::io(&path, e))
    })
    .await??;
    Ok(hashes.size == manifest.size && hashes.global == manifest.hash)
}

/// Writes the body of `response` to `file`, hashing it on the way (BLAKE3 chunks and SHA-256).
async fn stream_into(
    response: reqwest::Response,
    file: std::fs::File,
    chunk_size: u32,
    progress: &Progress,
    url: &str,
    partial_path: &Path,
    with_sha256: bool,
) -> Result<(std::fs::File, StreamHasher, Option<[u8; 32]>)> {
    use sha2::Digest;
    let mut hasher = StreamHasher::new(chunk_size);
    // Beside BLAKE3, for a registry's digest, and only then.
    let mut sha256 = with_sha256.then(sha2::Sha256::new);
    let mut out = tokio::fs::File::from_std(file);
    let mut body = response.bytes_stream();
    while let Some(piece) = body.next().await {
        let piece =
            piece.map_err(|e| origin_error(url, format!("the transfer broke off ({}); run again", causes(&e))))?;
        hasher.update(&piece);
        if let Some(sha256) = &mut sha256 {
            sha256.update(&piece);
        }
        out.write_all(&piece).await.map_err(|e| Error::io(partial_path, e))?;
        progress.set_done(hasher.size());
    }
    out.flush().await.map_err(|e| Error::io(partial_path, e))?;
    Ok((out.into_std().await, hasher, sha256.map(|s| s.finalize().into())))
}

/// The name the copy of `url` goes by: the last part of its path, decoded, checked as any
/// shared file's name is.
fn file_name_of(url: &reqwest::Url) -> Result<String> {
    let last = url
        .path_segments()
        .and_then(|mut parts| parts.next_back())
        .unwrap_or("");
    let name = percent_decode(last).ok_or_else(|| origin_error(url.as_str(), "its file name is not UTF-8".into()))?;
    if name.is_empty() {
        return Err(origin_error(
            url.as_str(),
            "it names no file (its path ends in `/`): give the URL of a file".into(),
        ));
    }
    swarm_proto::name::validate_name(&name)
        .ok()
        .filter(|_| !name.contains('/'))
        .ok_or_else(|| {
            origin_error(
                url.as_str(),
                format!("its file name {name:?} cannot be a file's name here"),
            )
        })?;
    Ok(name)
}

/// `%XX` escapes decoded (as the URL parser leaves them in paths), or `None` if the result is
/// not UTF-8. Written out: a few lines, where a crate would add a dependency for one call.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok())
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// An HTTP client's error with its causes, the deepest last ("connection refused" is three
/// levels down a failed request).
fn causes(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn origin_error(url: &str, message: String) -> Error {
    Error::Origin {
        url: url.to_owned(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_named_by_the_last_part_of_the_url_and_never_by_a_path_trick() {
        let name = |url: &str| file_name_of(&reqwest::Url::parse(url).unwrap()).map_err(|e| e.to_string());
        assert_eq!(name("https://h/a/b/disk.img").unwrap(), "disk.img");
        assert_eq!(name("http://h/a%20b.iso?x=1").unwrap(), "a b.iso");
        assert!(name("http://h/dir/").unwrap_err().contains("names no file"));
        assert!(name("http://h/").is_err());
        for trick in [
            "http://h/a/..%2F..%2Fetc%2Fpasswd",
            "http://h/%2E%2E",
            "http://h/a%2Fb",
            "http://h/x%00y",
        ] {
            assert!(name(trick).is_err(), "{trick} was taken as {:?}", name(trick));
        }
    }
}
