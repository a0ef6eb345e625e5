//! Two hosts as network namespaces joined by one veth pair, named after this process
//! (`hmb-a-<pid>`, `hmb-b-<pid>`), deleted on drop. Needs root and `ip` (iproute2).

use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::topology::{HOST_A, HOST_B, PREFIX_LEN};

/// The two namespaces; dropping it deletes them (and the veth with them).
#[derive(Debug)]
pub struct Lab {
    pub a: String,
    pub b: String,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running ip (install iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Lab {
    pub fn create() -> anyhow::Result<Lab> {
        let pid = std::process::id();
        let lab = Lab {
            a: format!("hmb-a-{pid}"),
            b: format!("hmb-b-{pid}"),
        };
        ip(&["netns", "add", &lab.a])?;
        ip(&["netns", "add", &lab.b])?;
        let (va, vb) = (format!("hmbva{pid}"), format!("hmbvb{pid}"));
        ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb])?;
        for (ns, dev, addr) in [(&lab.a, &va, HOST_A), (&lab.b, &vb, HOST_B)] {
            ip(&["link", "set", dev, "netns", ns])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/{PREFIX_LEN}"),
                "dev",
                dev,
            ])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        Ok(lab)
    }

    /// A command that runs `program` inside namespace `ns`.
    pub fn command(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).arg(program);
        cmd
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}
