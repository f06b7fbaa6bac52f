//! Certificates for the API's mutual-TLS tests, made with rcgen: a CA, the agent's server
//! certificate (`localhost`, 127.0.0.1), client certificates it signs (valid or expired), and
//! another CA's client certificate. Written as PEM files into a directory.

use std::path::{Path, PathBuf};

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair,
};

/// A CA that signs certificates written into `dir`.
pub struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    dir: PathBuf,
    /// The CA's certificate (PEM file).
    pub cert: PathBuf,
}

/// A certificate and its key, as PEM files.
pub struct CertFiles {
    /// The certificate.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
}

impl TestCa {
    /// A new CA named `name`, its certificate written to `dir/<name>-ca.pem`.
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let cert = params.self_signed(&key).expect("CA certificate");
        let path = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&path, cert.pem()).unwrap();
        TestCa {
            params,
            key,
            dir: dir.to_path_buf(),
            cert: path,
        }
    }

    /// The agent's certificate: `localhost` and 127.0.0.1.
    pub fn server(&self) -> CertFiles {
        self.issue(
            "server",
            "localhost",
            &["localhost", "127.0.0.1"],
            false,
            true,
        )
    }

    /// A client certificate with the common name `cn`, written as `<file>.pem`; `expired`
    /// ends it in 2021.
    pub fn client(&self, file: &str, cn: &str, expired: bool) -> CertFiles {
        self.issue(file, cn, &[], expired, false)
    }

    fn issue(&self, file: &str, cn: &str, sans: &[&str], expired: bool, server: bool) -> CertFiles {
        let key = KeyPair::generate().expect("key");
        let names: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        if expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2021, 1, 1);
        }
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("certificate");
        let out = CertFiles {
            cert: self.dir.join(format!("{file}.pem")),
            key: self.dir.join(format!("{file}-key.pem")),
        };
        std::fs::write(&out.cert, cert.pem()).unwrap();
        std::fs::write(&out.key, key.serialize_pem()).unwrap();
        out
    }
}
