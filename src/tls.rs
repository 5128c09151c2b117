//! PEM files for every TLS user of the process: the feed's and the REST client's extra
//! certificate authorities (`feed.tls_ca_file`) and the dashboard's certificate and key.
//!
//! One loader, so the three read PEM the same way and fail with the same words; each
//! caller wraps a [`PemError`] in its own error, which names the setting. Every user
//! runs the same rustls (the one `futures-rustls` re-exports, also under `ureq`) with
//! the `ring` provider. Reads files, so call it off the executors.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_rustls::rustls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A PEM file that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {why}", path.display())]
pub struct PemError {
    pub path: PathBuf,
    pub why: String,
}

impl PemError {
    fn new(path: &Path, why: impl std::fmt::Display) -> PemError {
        PemError {
            path: path.to_path_buf(),
            why: why.to_string(),
        }
    }
}

/// The certificates of a PEM file, in file order; a file without any is an error.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| PemError::new(path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| PemError::new(path, e))?;
    if certs.is_empty() {
        return Err(PemError::new(path, "no certificates in the file"));
    }
    Ok(certs)
}

/// The first private key of a PEM file.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| PemError::new(path, e))
}

/// The webpki roots, plus the certificates of `extra_ca_file` when given.
pub fn client_roots(extra_ca_file: Option<&Path>) -> Result<rustls::RootCertStore, PemError> {
    let mut roots =
        rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca_file {
        for cert in certificates(path)? {
            roots.add(cert).map_err(|e| PemError::new(path, e))?;
        }
    }
    Ok(roots)
}

/// The crypto provider every TLS configuration of the process uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("alphapulse-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_file_without_certificates_is_refused_with_its_path() {
        let path = temp_file("empty.pem", "no pem here\n");
        let e = certificates(&path).unwrap_err();
        assert_eq!(e.why, "no certificates in the file");
        assert_eq!(e.path, path);
        assert!(client_roots(Some(&path)).is_err());
        assert!(private_key(&path).is_err());
    }

    #[test]
    fn a_missing_file_is_an_error_not_a_panic() {
        let path = std::env::temp_dir().join("alphapulse-tls-missing/ca.pem");
        let e = certificates(&path).unwrap_err();
        assert_eq!(e.path, path);
        assert!(!e.why.is_empty());
    }

    #[test]
    fn extra_authorities_join_the_webpki_roots() {
        let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let path = temp_file("ca.pem", &key.cert.pem());
        let webpki = client_roots(None).unwrap().len();
        assert_eq!(certificates(&path).unwrap().len(), 1);
        assert_eq!(client_roots(Some(&path)).unwrap().len(), webpki + 1);
        let key_path = temp_file("key.pem", &key.signing_key.serialize_pem());
        assert!(private_key(&key_path).is_ok());
    }
}
