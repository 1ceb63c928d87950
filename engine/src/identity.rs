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

use crate::error::{Error, Result};
use crate::ids::PeerId;

const KEY_FILE: &str = "node.key";
const CERT_FILE: &str = "node.crt";

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
            .map_err(|e| Error::Transport(format!("cannot generate a key pair: {e}")))?;
        let cert = certified.cert.der().clone();
        let key = PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der());
        Self::from_parts(cert, key)
    }

    /// Loads the identity kept in `dir`, creating and storing a new one if there is none.
    pub fn load_or_create(dir: &Path) -> Result<Identity> {
        let key_path = dir.join(KEY_FILE);
        let cert_path = dir.join(CERT_FILE);
        if key_path.exists() && cert_path.exists() {
            let key = fs::read(&key_path).map_err(|e| Error::io(&key_path, e))?;
            let cert = fs::read(&cert_path).map_err(|e| Error::io(&cert_path, e))?;
            return Self::from_parts(CertificateDer::from(cert), PrivatePkcs8KeyDer::from(key)).map_err(|e| {
                Error::Transport(format!(
                    "the identity in {} is unreadable ({e}); move {KEY_FILE} and {CERT_FILE} away to make a new one",
                    dir.display()
                ))
            });
        }
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let identity = Self::generate()?;
        write_private(&key_path, identity.key.secret_pkcs8_der())?;
        fs::write(&cert_path, identity.cert.as_ref()).map_err(|e| Error::io(&cert_path, e))?;
        Ok(identity)
    }

    fn from_parts(cert: CertificateDer<'static>, key: PrivatePkcs8KeyDer<'static>) -> Result<Identity> {
        let id = peer_id_of(&cert).map_err(|e| Error::Transport(e.to_string()))?;
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
        .map_err(|e| Error::io(path, e))?;
    file.write_all(bytes).map_err(|e| Error::io(path, e))
}

/// The id belonging to a certificate: BLAKE3 of its SubjectPublicKeyInfo.
pub fn peer_id_of(cert: &CertificateDer<'_>) -> Result<PeerId, rustls::Error> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
    Ok(blake3::hash(parsed.tbs_certificate.subject_pki.raw).into())
}

/// The crypto provider every swarm TLS configuration uses.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Verifies a server's certificate by key possession, optionally requiring a known id.
#[derive(Debug)]
pub(crate) struct ServerIdVerifier {
    pub(crate) expected: Option<PeerId>,
    pub(crate) provider: Arc<CryptoProvider>,
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
        peer_id_of(end_entity)?;
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

    #[test]
    fn garbage_certificate_is_refused() {
        assert!(peer_id_of(&CertificateDer::from(vec![1, 2, 3])).is_err());
    }
}
