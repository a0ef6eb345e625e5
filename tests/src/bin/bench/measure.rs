//! Running one client job on host A while watching the proxies: CPU seconds used during the
//! job and the largest RSS seen (sampled every 100 ms), from `/proc`.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use hostmesh_tests::bench::job::Job;

use hostmesh_lab::Host;

use crate::procs::{cpu_seconds, private_mib, rss_mib};

/// What one proxy used during a job.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub cpu_s: f64,
    pub rss_max_mib: f64,
    /// The largest private (anonymous) part of the RSS seen.
    pub private_max_mib: f64,
}

/// The client host and this binary, which the client runs.
#[derive(Debug)]
pub struct Client<'a> {
    pub host: &'a Host,
    pub exe: std::path::PathBuf,
}

impl Client<'_> {
    /// Runs `job` in host A; returns its JSON result and each watched pid's usage.
    pub fn run(&self, job: &Job, watch: &[u32]) -> anyhow::Result<(serde_json::Value, Vec<Usage>)> {
        let before: Vec<f64> = watch
            .iter()
            .map(|p| cpu_seconds(*p).unwrap_or(0.0))
            .collect();
        let mut rss = vec![(0.0f64, 0.0f64); watch.len()];
        let child = self
            .host
            .netns()
            .command(&self.exe)
            .arg("client")
            .arg(serde_json::to_string(job)?)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting the client")?;
        let output = watch_until_exit(child, watch, &mut rss)?;
        let usage = watch
            .iter()
            .zip(before)
            .zip(rss)
            .map(|((pid, before), (rss_max_mib, private_max_mib))| Usage {
                cpu_s: cpu_seconds(*pid).unwrap_or(before) - before,
                rss_max_mib,
                private_max_mib,
            })
            .collect();
        if !output.status.success() {
            bail!("client: {}", String::from_utf8_lossy(&output.stderr).trim());
        }
        let value = serde_json::from_slice(&output.stdout).context("client result")?;
        Ok((value, usage))
    }

    /// Holds `n` idle connections to `addr` from host A, calls `during` while they are open,
    /// then closes them.
    pub fn hold<T>(
        &self,
        addr: SocketAddr,
        n: usize,
        during: impl FnOnce() -> T,
    ) -> anyhow::Result<T> {
        let mut child = self
            .host
            .netns()
            .command(&self.exe)
            .arg("hold")
            .arg(addr.to_string())
            .arg(n.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting the idle client")?;
        let stdout = child.stdout.take().context("client stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        if !line.starts_with("held") {
            let out = child.wait_with_output()?;
            bail!(
                "idle client: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let result = during();
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.flush();
        }
        let _ = child.wait();
        Ok(result)
    }
}

fn watch_until_exit(
    mut child: Child,
    watch: &[u32],
    rss: &mut [(f64, f64)],
) -> anyhow::Result<std::process::Output> {
    // Read the pipes on threads so a large output never blocks the client.
    let stdout = child.stdout.take().context("client stdout")?;
    let stderr = child.stderr.take().context("client stderr")?;
    let out_reader = std::thread::spawn(move || read_all(stdout));
    let err_reader = std::thread::spawn(move || read_all(stderr));
    let status = loop {
        for (pid, (max, private)) in watch.iter().zip(rss.iter_mut()) {
            *max = max.max(rss_mib(*pid).unwrap_or(0.0));
            *private = private.max(private_mib(*pid).unwrap_or(0.0));
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Ok(std::process::Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    })
}

fn read_all(mut r: impl std::io::Read) -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = r.read_to_end(&mut buf);
    buf
}
