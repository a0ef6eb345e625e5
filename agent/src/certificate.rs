//! `hostmesh-agent certificate`: obtain the host's certificate, or renew it, and store it under
//! the state directory.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use hostmesh_ca::client::{CaEndpoint, Credential};
use hostmesh_ca::server::{CONTROL_NAMESPACE, CONTROL_SERVICE_ACCOUNT};
use hostmesh_ca::tls::{ExpectedServer, TrustBundle};
use hostmesh_ca::workload::{IdentityKeeper, WorkloadCertificate, WorkloadFiles, new_key_and_csr};
use hostmesh_ca::{SpiffeId, TrustDomain};

#[derive(Debug, clap::Args)]
pub struct CertificateArgs {
    /// The control server's xDS/certificate address, host:port.
    #[arg(
        long,
        env = "HOSTMESH_CONTROL_ADDRESS",
        default_value = "hostmesh-control:15012"
    )]
    control_address: String,
    /// The trust anchor this host starts with.
    #[arg(long, default_value = "/etc/hostmesh/root-cert.pem")]
    root_cert: PathBuf,
    #[arg(long, default_value = TrustDomain::DEFAULT)]
    trust_domain: TrustDomain,
    /// This host's namespace.
    #[arg(long, env = "HOSTMESH_NAMESPACE")]
    namespace: String,
    /// This host's service account.
    #[arg(long, env = "HOSTMESH_SERVICE_ACCOUNT")]
    service_account: String,
    /// File holding the join token, used only when no valid certificate is stored.
    #[arg(long, default_value = "/etc/hostmesh/join-token")]
    join_token_file: PathBuf,
    /// Where the key and chain are kept.
    #[arg(long, default_value = "/var/lib/hostmesh")]
    state_dir: PathBuf,
    /// Lifetime to ask for (the server may grant less).
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// Renew now with the current certificate, even if it is still fresh.
    #[arg(long)]
    renew: bool,
}

pub fn run(args: CertificateArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(obtain(args))
}

async fn obtain(args: CertificateArgs) -> anyhow::Result<()> {
    let id = SpiffeId::new(
        args.trust_domain.clone(),
        &args.namespace,
        &args.service_account,
    )?;
    let roots = std::fs::read(&args.root_cert)
        .with_context(|| format!("reading {}", args.root_cert.display()))?;
    let trust = TrustBundle::from_pem(args.trust_domain.clone(), &roots)
        .with_context(|| format!("{}", args.root_cert.display()))?;
    let control = SpiffeId::new(
        args.trust_domain.clone(),
        CONTROL_NAMESPACE,
        CONTROL_SERVICE_ACCOUNT,
    )?;
    let endpoint = CaEndpoint {
        address: args.control_address.clone(),
        trust,
        server: ExpectedServer::Identity(control),
        timeout: Duration::from_secs(10),
    };
    let token = match std::fs::read_to_string(&args.join_token_file) {
        Ok(t) => Some(t.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(e).with_context(|| format!("reading {}", args.join_token_file.display()));
        }
    };
    let files = WorkloadFiles::new(&args.state_dir);
    let keeper = IdentityKeeper::obtain(
        endpoint.clone(),
        files.clone(),
        &id,
        args.ttl,
        token.as_deref(),
    )
    .await?;
    let mut cert = keeper.subscribe().borrow().as_ref().clone();
    if args.renew {
        let (key_pem, csr) = new_key_and_csr(&id)?;
        let chain = endpoint
            .request(csr, args.ttl, &Credential::Certificate(keeper.slot()))
            .await?;
        cert = WorkloadCertificate::from_pem(chain.concat(), key_pem)?;
        files.save(&cert)?;
    }
    println!("identity   {}", cert.id);
    println!("serial     {}", cert.serial);
    println!(
        "valid      {} to {}",
        humantime::format_rfc3339_seconds(cert.not_before),
        humantime::format_rfc3339_seconds(cert.not_after)
    );
    println!("key        {}", files.key().display());
    println!("chain      {}", files.chain().display());
    Ok(())
}
