//! Node identity: a persistent key pair with a self-signed certificate, and the rustls
//! verifiers that turn a TLS handshake into proof of a [`PeerId`].
//!
//! A node's id is BLAKE3 of its certificate's SubjectPublicKeyInfo. Certificates are not
//! checked against any authority; instead the handshake's signature proves that the other side
//! holds the private key of the certificate it showed, and the id is derived from that key.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::ids::PeerId;

const KEY_FILE: &str = "node.key";
const CERT_FILE: &str = "node.crt";

/// Why a node's identity could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Reading or writing a key file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: std::path::PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The stored key or certificate is unusable.
    #[error("the identity in {} is unreadable ({reason}); move {KEY_FILE} and {CERT_FILE} away to make a new one", dir.display())]
    Unreadable {
        /// The state directory.
        dir: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// No key pair could be generated.
    #[error("cannot generate a key pair: {0}")]
    Generate(String),
}

type Result<T, E = IdentityError> = std::result::Result<T, E>;

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A node's key pair and certificate.
pub struct Identity {
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
    id: PeerId,
}

impl Identity {
    /// A fresh identity that is not stored anywhere.
    pub fn generate() -> Result<Identity> {
        let certified = rcgen::generate_simple_self_signed(vec!["swarm".to_owned()])
            .map_err(|e| IdentityError::Generate(e.to_string()))?;
        let cert = certified.cert.der().clone();
        let key = PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der());
        Self::from_parts(cert, key).map_err(|e| IdentityError::Generate(e.to_string()))
    }

    /// Loads the identity kept in `dir`, creating and storing a new one if there is none.
    pub fn load_or_create(dir: &Path) -> Result<Identity> {
        let key_path = dir.join(KEY_FILE);
        let cert_path = dir.join(CERT_FILE);
        if key_path.exists() && cert_path.exists() {
            let key = fs::read(&key_path).map_err(io_error(&key_path))?;
            let cert = fs::read(&cert_path).map_err(io_error(&cert_path))?;
            return Self::from_parts(CertificateDer::from(cert), PrivatePkcs8KeyDer::from(key)).map_err(|e| {
                IdentityError::Unreadable {
                    dir: dir.to_owned(),
                    reason: e.to_string(),
                }
            });
        }
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        let identity = Self::generate()?;
        write_private(&key_path, identity.key.secret_pkcs8_der())?;
        fs::write(&cert_path, identity.cert.as_ref()).map_err(io_error(&cert_path))?;
        Ok(identity)
    }

    fn from_parts(cert: CertificateDer<'static>, key: PrivatePkcs8KeyDer<'static>) -> Result<Identity, rustls::Error> {
        let id = peer_id_of(&cert)?;
        Ok(Identity { cert, key, id })
    }

    /// This node's id.
    pub fn id(&self) -> PeerId {
        self.id
    }

    pub(crate) fn cert_chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.cert.clone()]
    }

    pub(crate) fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_error(path))?;
    file.write_all(bytes).map_err(io_error(path))
}

/// The id belonging to a certificate: BLAKE3 of its DER SubjectPublicKeyInfo (outer
/// `SEQUENCE` included).
pub fn peer_id_of(cert: &CertificateDer<'_>) -> Result<PeerId, rustls::Error> {
    let parsed = webpki::EndEntityCert::try_from(cert)
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
    Ok(blake3::hash(parsed.subject_public_key_info().as_ref()).into())
}

/// The crypto provider every swarm TLS configuration uses.
///
/// AES-128-GCM with SHA-256 first: the SHA-384 key schedule of the AES-256 suite, which
/// rustls prefers, was a tenth of a tracker's CPU in handshakes, and AES-128 is as safe for
/// swarm's purposes and faster on every transfer.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|suite| suite.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    Arc::new(provider)
}

/// Verifies a server's certificate by key possession, optionally requiring a known id.
#[derive(Debug)]
pub(crate) struct ServerIdVerifier {
    pub(crate) expected: Option<PeerId>,
    pub(crate) provider: Arc<CryptoProvider>,
    /// The id the other side showed, kept so that a refused handshake can say which it was.
    pub(crate) seen: std::sync::Mutex<Option<PeerId>>,
}

impl ServerCertVerifier for ServerIdVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let id = peer_id_of(end_entity)?;
        *self.seen.lock().expect("verifier lock poisoned") = Some(id);
        match self.expected {
            Some(expected) if expected != id => Err(rustls::Error::General(format!(
                "expected node {} but the other side is {}",
                expected.short(),
                id.short()
            ))),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not used by QUIC".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Client certificates checked in full, for the test that resumed handshakes skip it.
#[cfg(test)]
pub(crate) static FULL_HANDSHAKES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Requires every client to show a certificate and prove its key; any key is welcome.
#[derive(Debug)]
pub(crate) struct ClientIdVerifier {
    pub(crate) provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for ClientIdVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let id = peer_id_of(end_entity)?;
        tracing::trace!(peer = %id.short(), "full handshake: client certificate checked");
        #[cfg(test)]
        FULL_HANDSHAKES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not used by QUIC".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_persists() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::load_or_create(dir.path()).unwrap();
        let again = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(first.id(), again.id());
        assert_ne!(first.id(), Identity::generate().unwrap().id());
    }

    /// Ids are what they were when x509-parser derived them: a certificate made then, and the
    /// id it had.
    #[test]
    fn ids_are_stable() {
        const CERT: &str = "3082015930820100a00302010202144189538d9f6a3c03e94a0450bb5d89e61b8de95a300a06082a8648ce3d0403023021311f301d06035504030c16726367656e2073656c66207369676e656420636572743020170d3735303130313030303030305a180f34303936303130313030303030305a3021311f301d06035504030c16726367656e2073656c66207369676e656420636572743059301306072a8648ce3d020106082a8648ce3d03010703420004a2d1e783bfa9a3f440b6b50af90531a3f647371e49485b42bc455308abef157649b0787772f1825dd85e9a84a4d7d2308feaae597cf624e8e525147e7bca07ada314301230100603551d11040930078205737761726d300a06082a8648ce3d040302034700304402203001cce48a9f1ed7d6faeaf5acb1b4878704943ac7dabec85d8a53a74e63a64b02204075256f73fcb8e8266ffe49c8ca9ebfbba2ef21786c69a6fb06fc62732825d9";
        const ID: &str = "8825171149295266e4f27dfa6dff6bbf35727bc146c70e2599f02c94486e5fac";
        let der: Vec<u8> = (0..CERT.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&CERT[i..i + 2], 16).unwrap())
            .collect();
        let id = peer_id_of(&CertificateDer::from(der)).unwrap();
        assert_eq!(id.to_string(), ID);
    }

    #[test]
    fn garbage_certificate_is_refused() {
        assert!(peer_id_of(&CertificateDer::from(vec![1, 2, 3])).is_err());
    }
}
