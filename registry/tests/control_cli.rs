//! The `hostmesh-control` binary as an operator runs it: `ca init`, `ca sign`, `token create`
//! and `run`, checked with openssl and with a real client over TLS.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use hostmesh_ca::client::{CaEndpoint, Credential};
use hostmesh_ca::tls::{ExpectedServer, TrustBundle};
use hostmesh_ca::workload::new_key_and_csr;
use hostmesh_ca::{SpiffeId, TrustDomain};

fn control(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hostmesh-control"))
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[test]
fn ca_init_then_offline_sign() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    let out = control(&[
        "ca",
        "init",
        "--dir",
        &s(&ca),
        "--trust-domain",
        "example.org",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("signing CA for trust domain example.org"));
    assert_eq!(
        std::fs::metadata(ca.join("ca-key.pem"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    let again = control(&["ca", "init", "--dir", &s(&ca)]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("a CA already exists here; refusing to overwrite it"),
        "{}",
        text(&again.stderr)
    );

    let csr = dir.path().join("h.csr");
    openssl(&[
        "req",
        "-new",
        "-nodes",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-subj",
        "/CN=db",
        "-keyout",
        &s(&dir.path().join("h.key")),
        "-out",
        &s(&csr),
    ]);
    let id = "spiffe://example.org/ns/legacy/sa/billing-db";
    let out = control(&[
        "ca",
        "sign",
        "--dir",
        &s(&ca),
        "--csr",
        &s(&csr),
        "--spiffe-id",
        id,
        "--ttl",
        "2h",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let chain = text(&out.stdout);
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 3);
    let chain_path = dir.path().join("chain.pem");
    std::fs::write(&chain_path, &chain).unwrap();
    let leaf = dir.path().join("leaf.pem");
    let first = chain
        .split_inclusive("-----END CERTIFICATE-----\n")
        .next()
        .unwrap();
    std::fs::write(&leaf, first).unwrap();
    let verified = openssl(&[
        "verify",
        "-CAfile",
        &s(&ca.join("root-cert.pem")),
        "-untrusted",
        &s(&chain_path),
        &s(&leaf),
    ]);
    assert!(verified.trim_end().ends_with(": OK"), "{verified}");
    let san = openssl(&["x509", "-noout", "-ext", "subjectAltName", "-in", &s(&leaf)]);
    assert_eq!(
        san.lines().nth(1).map(str::trim),
        Some(format!("URI:{id}").as_str()),
        "{san}"
    );

    // Garbage in, a clear error out.
    std::fs::write(dir.path().join("bad.csr"), "not a csr").unwrap();
    let out = control(&[
        "ca",
        "sign",
        "--dir",
        &s(&ca),
        "--csr",
        &s(&dir.path().join("bad.csr")),
        "--spiffe-id",
        id,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("the CSR is not PEM"),
        "{}",
        text(&out.stderr)
    );
    // An identity outside the CA's trust domain.
    let out = control(&[
        "ca",
        "sign",
        "--dir",
        &s(&ca),
        "--csr",
        &s(&csr),
        "--spiffe-id",
        "spiffe://cluster.local/ns/a/sa/b",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("belongs to trust domain \"example.org\""),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn run_serves_certificates_to_a_token_holder() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    let state = dir.path().join("state");
    assert!(control(&["ca", "init", "--dir", &s(&ca)]).status.success());
    let out = control(&[
        "token",
        "create",
        "--namespace",
        "demo",
        "--service-account",
        "front",
        "--state-dir",
        &s(&state),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_owned();
    assert!(token.starts_with("hmjt1."), "{token}");

    let registry = dir.path().join("registry.d");
    std::fs::create_dir(&registry).unwrap();

    // A loose key permission stops the server at start, with the reason.
    std::fs::set_permissions(
        ca.join("ca-key.pem"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = control(&[
        "run",
        "--listen",
        "127.0.0.1:0",
        "--ca-dir",
        &s(&ca),
        "--state-dir",
        &s(&state),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("private key is readable by group or others (mode 0644)"),
        "{}",
        text(&out.stderr)
    );
    std::fs::set_permissions(
        ca.join("ca-key.pem"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();

    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let address = format!("127.0.0.1:{port}");
    let mut server = Command::new(env!("CARGO_BIN_EXE_hostmesh-control"))
        .args([
            "run",
            "--listen",
            &address,
            "--ca-dir",
            &s(&ca),
            "--state-dir",
            &s(&state),
            "--registry-dir",
            &s(&registry),
            "--status-listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let result = rt.block_on(async {
        let roots = std::fs::read(ca.join("root-cert.pem")).unwrap();
        let endpoint = CaEndpoint {
            address,
            trust: TrustBundle::from_pem(TrustDomain::default(), &roots).unwrap(),
            server: ExpectedServer::Identity(
                "spiffe://cluster.local/ns/hostmesh-system/sa/hostmesh-control"
                    .parse()
                    .unwrap(),
            ),
            timeout: Duration::from_secs(2),
        };
        let id: SpiffeId = "spiffe://cluster.local/ns/demo/sa/front".parse().unwrap();
        // The server needs a moment to bind: retry for up to 10 s.
        let mut last = None;
        for _ in 0..100 {
            let (_, csr) = new_key_and_csr(&id).unwrap();
            match endpoint
                .request(
                    csr,
                    Duration::from_secs(600),
                    &Credential::JoinToken(token.clone()),
                )
                .await
            {
                Ok(chain) => return Ok(chain),
                Err(e) if e.is_transient() => last = Some(e),
                Err(e) => return Err(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(last.unwrap())
    });
    let _ = server.kill();
    let _ = server.wait();
    let chain = result.unwrap();
    assert_eq!(chain.len(), 3);
    let id = hostmesh_ca::tls::spiffe_id_of(
        &hostmesh_ca::tls::certs_from_pem("leaf", chain[0].as_bytes()).unwrap()[0],
    )
    .unwrap();
    assert_eq!(id.to_string(), "spiffe://cluster.local/ns/demo/sa/front");
}
