//! The baseline a user would pick instead: Debian's `haproxy` on each host, host A's in front
//! of the client on 127.0.0.1, mutual TLS (ECDSA P-256, like the mesh's certificates) between
//! the two, host B's forwarding to the server over loopback. HTTP services run in `mode http`
//! (HTTP/2 with `proto h2` and ALPN h2 on the TLS hop), TCP services in `mode tcp`.
//!
//! Install: `apt-get install haproxy` (the harness never installs anything itself).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use hostmesh_lab::{Host, Lab, Process};
use hostmesh_tests::bench::clients::Protocol;

use crate::topology::{HOST_B, Kind, SERVICES};

/// Both HAProxies.
#[derive(Debug)]
pub struct HaproxyPair {
    pub a: Process,
    pub b: Process,
}

fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .context("running openssl")?;
    if !out.status.success() {
        bail!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A CA and one certificate per side, `<side>.pem` = certificate + key as HAProxy wants.
fn certificates(dir: &Path) -> anyhow::Result<()> {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=bench-ca",
        "-days",
        "2",
    ]);
    openssl(dir, &ca)?;
    for side in ["a", "b"] {
        let (key, csr, crt) = (
            format!("{side}.key"),
            format!("{side}.csr"),
            format!("{side}.crt"),
        );
        let subject = format!("/CN=bench-{side}");
        let mut req = vec!["req"];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr, "-subj", &subject]);
        openssl(dir, &req)?;
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "2",
            ],
        )?;
        let pem =
            std::fs::read_to_string(dir.join(&crt))? + &std::fs::read_to_string(dir.join(&key))?;
        std::fs::write(dir.join(format!("{side}.pem")), pem)?;
    }
    Ok(())
}

/// `global` and `defaults`; `maxconn` is what the open-file limit allows (two descriptors per
/// proxied connection).
fn global(file_limit: u64) -> String {
    let maxconn = file_limit.saturating_sub(100) / 2;
    format!(
        "global\n  maxconn {maxconn}\n  log stderr format raw local0 err\n\
         defaults\n  timeout connect 5s\n  timeout client 120s\n  timeout server 120s\n\
         \x20 option dontlognull\n\n"
    )
}

fn config_a(dir: &Path, file_limit: u64) -> String {
    let mut cfg = global(file_limit);
    let tls = format!(
        "ssl crt {} ca-file {} verify required",
        dir.join("a.pem").display(),
        dir.join("ca.pem").display()
    );
    for s in SERVICES {
        let (mode, bind_extra, server_extra) = match s.kind {
            Kind::Http(Protocol::Http1) => ("http", "", ""),
            Kind::Http(_) => ("http", " proto h2", " alpn h2"),
            Kind::Echo | Kind::Sink => ("tcp", "", ""),
        };
        let _ = write!(
            cfg,
            "frontend {name}\n  mode {mode}\n  bind 127.0.0.1:{front}{bind_extra}\n  default_backend {name}\n\
             backend {name}\n  mode {mode}\n  server b {HOST_B}:{back} {tls}{server_extra}\n\n",
            name = s.name,
            front = s.haproxy_front,
            back = s.haproxy_back,
        );
    }
    cfg
}

fn config_b(dir: &Path, file_limit: u64) -> String {
    let mut cfg = global(file_limit);
    let tls = format!(
        "ssl crt {} ca-file {} verify required",
        dir.join("b.pem").display(),
        dir.join("ca.pem").display()
    );
    for s in SERVICES {
        let (mode, alpn, server_extra) = match s.kind {
            Kind::Http(Protocol::Http1) => ("http", " alpn http/1.1", ""),
            Kind::Http(_) => ("http", " alpn h2", " proto h2"),
            Kind::Echo | Kind::Sink => ("tcp", "", ""),
        };
        let _ = write!(
            cfg,
            "frontend {name}\n  mode {mode}\n  bind {HOST_B}:{back} {tls}{alpn}\n  default_backend {name}\n\
             backend {name}\n  mode {mode}\n  server s 127.0.0.1:{direct}{server_extra}\n\n",
            name = s.name,
            back = s.haproxy_back,
            direct = s.direct,
        );
    }
    cfg
}

/// `haproxy -v`'s first line, if HAProxy is installed.
pub fn version(bin: &Path) -> Option<String> {
    let out = Command::new(bin).arg("-v").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(str::to_owned)
}

impl HaproxyPair {
    pub fn start(
        lab: &Lab,
        hosts: [&Host; 2],
        bin: &Path,
        file_limit: u64,
    ) -> anyhow::Result<HaproxyPair> {
        let dir = lab.subdir("haproxy")?;
        let dir = dir.as_path();
        certificates(dir)?;
        let mut started = Vec::new();
        for (side, host, cfg) in [
            ("a", hosts[0], config_a(dir, file_limit)),
            ("b", hosts[1], config_b(dir, file_limit)),
        ] {
            let path: PathBuf = dir.join(format!("haproxy-{side}.cfg"));
            std::fs::write(&path, cfg)?;
            run_check(bin, &path)?;
            let path = path.to_str().context("a UTF-8 temporary folder")?;
            let name = format!("haproxy-{side}");
            let process = lab
                .spawn(host.netns(), &name, bin, &["-db", "-f", path])
                .context("starting haproxy (apt-get install haproxy)")?;
            started.push(process);
        }
        let b = started.pop().context("two haproxies")?;
        let a = started.pop().context("two haproxies")?;
        Ok(HaproxyPair { a, b })
    }
}

fn run_check(bin: &Path, cfg: &Path) -> anyhow::Result<()> {
    let out = Command::new(bin)
        .arg("-c")
        .arg("-f")
        .arg(cfg)
        .output()
        .context("running haproxy -c (apt-get install haproxy)")?;
    if !out.status.success() {
        bail!(
            "haproxy refuses {}: {}",
            cfg.display(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(())
}
