//! `datamesh cert dev`: a development CA and a certificate per node, so a mesh runs
//! over mutual TLS on one machine with no `openssl` command.
//!
//! The directory gets `ca.pem` and `ca.key` (made once, reused by later runs, so
//! certificates for more nodes can be added), then `NAME.pem` and `NAME.key` for each
//! node name. A node's certificate is for both ends of a connection (server and
//! client authentication), names the node as the URI `datamesh://NAME` (the identity
//! exports are checked against) and is valid for `localhost`, `127.0.0.1`, `::1` and
//! any `--host` given, so hostname checks pass on loopback. Keys are written mode
//! 0600. These certificates are for development: the CA key sits beside them.

use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};

use super::TlsError;

/// The common name of the development CA.
const CA_NAME: &str = "DataMesh development CA";

/// The files one run wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevCerts {
    /// The CA certificate (`ca.pem`): what nodes and clients trust (`tls_ca`, `--ca`).
    pub ca: PathBuf,
    /// Whether the CA was made by this run (else an existing one signed).
    pub new_ca: bool,
    /// Per node name: its certificate and its key.
    pub nodes: Vec<(String, PathBuf, PathBuf)>,
}

fn failed(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

fn rcgen_error(e: rcgen::Error) -> TlsError {
    TlsError::Config(format!("cannot make the certificate: {e}"))
}

/// Writes `text` to `path` with `mode`, replacing the file whole.
fn write(path: &Path, text: &str, mode: u32) -> Result<(), TlsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let partial = path.with_extension("partial");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&partial)
        .map_err(|e| failed(&partial, e))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| failed(&partial, e))?;
    std::fs::rename(&partial, path).map_err(|e| failed(path, e))
}

/// Validity: from the start of last year to the start of the year after next, so a
/// clock a little off does not matter.
fn validity(params: &mut CertificateParams) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Days since 1970 / days per Gregorian year.
    let year = 1970 + i32::try_from(now / 86_400 * 400 / 146_097).unwrap_or(0);
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + 2, 1, 1);
}

fn serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    // A failing random source leaves zeros: the serial is then not unique, which
    // only matters to revocation lists, which development certificates do not use.
    let _ = getrandom::fill(&mut bytes);
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// Makes (or reuses) the CA in `out` and a certificate for each name in `names`, valid
/// also for each of `hosts` (DNS names or IP addresses).
///
/// # Errors
/// [`TlsError`]: a name that is not a node name, a file that cannot be written, a
/// `ca.key` without its `ca.pem`.
pub fn make(out: &Path, names: &[String], hosts: &[String]) -> Result<DevCerts, TlsError> {
    for name in names {
        crate::mesh::check_name(name)
            .map_err(|e| TlsError::Config(format!("`{name}` is not a node name: {e}")))?;
    }
    crate::log::private_dir(out).map_err(|e| failed(out, e))?;
    let ca_pem = out.join("ca.pem");
    let ca_key = out.join("ca.key");
    let (issuer, new_ca) = if ca_key.exists() {
        if !ca_pem.exists() {
            return Err(failed(
                &ca_pem,
                "missing beside ca.key: remove ca.key to make a new CA",
            ));
        }
        let pem = std::fs::read_to_string(&ca_key).map_err(|e| failed(&ca_key, e))?;
        let key = KeyPair::from_pem(&pem).map_err(|e| failed(&ca_key, e))?;
        (Issuer::new(ca_params(), key), false)
    } else {
        let key = KeyPair::generate().map_err(rcgen_error)?;
        let mut params = ca_params();
        validity(&mut params);
        params.serial_number = Some(serial());
        let cert = params.self_signed(&key).map_err(rcgen_error)?;
        write(&ca_key, &key.serialize_pem(), 0o600)?;
        write(&ca_pem, &cert.pem(), 0o644)?;
        (Issuer::new(params, key), true)
    };
    let mut nodes = Vec::new();
    for name in names {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name.as_str());
        params.distinguished_name = dn;
        let mut sans = vec![SanType::URI(
            format!("{}{name}", super::NAME_SCHEME)
                .try_into()
                .map_err(rcgen_error)?,
        )];
        for host in ["localhost", "127.0.0.1", "::1"]
            .into_iter()
            .chain(hosts.iter().map(String::as_str))
        {
            sans.push(match host.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(host.try_into().map_err(rcgen_error)?),
            });
        }
        params.subject_alt_names = sans;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(serial());
        validity(&mut params);
        let key = KeyPair::generate().map_err(rcgen_error)?;
        let cert = params.signed_by(&key, &issuer).map_err(rcgen_error)?;
        let cert_path = out.join(format!("{name}.pem"));
        let key_path = out.join(format!("{name}.key"));
        write(&key_path, &key.serialize_pem(), 0o600)?;
        write(&cert_path, &cert.pem(), 0o644)?;
        nodes.push((name.clone(), cert_path, key_path));
    }
    Ok(DevCerts {
        ca: ca_pem,
        new_ca,
        nodes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_certificates_name_their_node_and_verify_against_their_ca() {
        let dir = tempfile::tempdir().expect("dir");
        let made = make(dir.path(), &["ledger".to_owned()], &[]).expect("made");
        assert!(made.new_ca);
        let (_, cert, key) = &made.nodes[0];
        let certs = super::super::read_certs(cert).expect("cert");
        assert_eq!(
            super::super::peer_name(&certs[0]).as_deref(),
            Some("ledger")
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(key).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A second run reuses the CA: both certificates load in one server
        // configuration that verifies clients against it.
        let again = make(
            dir.path(),
            &["bank".to_owned()],
            &["db.internal".to_owned()],
        )
        .expect("again");
        assert!(!again.new_ca);
        let files = super::super::TlsFiles {
            cert: again.nodes[0].1.clone(),
            key: again.nodes[0].2.clone(),
            ca: Some(again.ca.clone()),
        };
        super::super::server_config(&files).expect("config");
        // Verification against the CA, as a server verifying a client would.
        let roots = super::super::roots(&again.ca).expect("roots");
        let verifier = tokio_rustls::rustls::server::WebPkiClientVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            super::super::provider(),
        )
        .build()
        .expect("verifier");
        let now = tokio_rustls::rustls::pki_types::UnixTime::now();
        for cert in [cert, &again.nodes[0].1] {
            let der = super::super::read_certs(cert).expect("cert").remove(0);
            verifier
                .verify_client_cert(&der, &[], now)
                .expect("verifies against the CA");
        }
        assert!(make(dir.path(), &["not a name".to_owned()], &[]).is_err());
    }
}
