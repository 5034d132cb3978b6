//! Reading a large remote file: exec of `cat` (what nightshift uses) against
//! SFTP (russh-sftp) over the same russh connection, with OpenSSH's own
//! `ssh host cat` as the reference. Prints a Markdown table for
//! BENCHMARKS.md. Run: `cargo bench -p nightshift-transport --bench stream`.

#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]

use std::time::{Duration, Instant};

use nightshift_testbed::Sshd;
use nightshift_transport::{Command, Endpoint, KnownHosts, Session, SshConfig, shell_quote};
use tokio::io::AsyncReadExt;

const MIB: usize = 1024 * 1024;
const SIZE_MIB: usize = 256;
const RUNS: usize = 3;

#[tokio::main]
async fn main() {
    let sshd = Sshd::start().expect("sshd");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("big.bin");
    let pattern: Vec<u8> = (0..MIB as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    std::fs::write(&file, pattern.repeat(SIZE_MIB)).expect("write");
    let path = file.display().to_string();

    let endpoint = Endpoint {
        name: "bench".into(),
        address: sshd.addr().ip().to_string(),
        port: sshd.addr().port(),
        user: sshd.user().into(),
        identity: Some(sshd.client_key()),
        jump: None,
    };
    let mut config =
        SshConfig::new(KnownHosts::load(&sshd.known_hosts(), &[]).expect("known_hosts"));
    config.agent = None;
    let session = Session::connect(&endpoint, &config).await.expect("connect");

    let exec = median(RUNS, || async {
        let mut reading = session
            .read_stream(&Command::new(format!("cat {}", shell_quote(&path))))
            .await
            .expect("cat");
        let n = drain(&mut reading).await;
        reading.finish().await.expect("finish");
        n
    })
    .await;
    let sftp = median(RUNS, || async {
        let stream = session.subsystem("sftp").await.expect("sftp subsystem");
        let sftp = russh_sftp::client::SftpSession::new(stream)
            .await
            .expect("sftp session");
        let mut remote = sftp.open(&path).await.expect("open");
        drain(&mut remote).await
    })
    .await;
    let openssh = median(RUNS, || async {
        let out = sshd
            .ssh(&format!("cat {}", shell_quote(&path)))
            .expect("ssh");
        assert!(out.status.success());
        out.stdout.len()
    })
    .await;
    let rate = |d: Duration| SIZE_MIB as f64 / d.as_secs_f64();
    println!("| read {SIZE_MIB} MiB over SSH on loopback | seconds | MiB/s |\n|---|---|---|");
    println!(
        "| nightshift, exec of `cat` | {:.2} | {:.0} |",
        exec.as_secs_f64(),
        rate(exec)
    );
    println!(
        "| nightshift, SFTP (russh-sftp) | {:.2} | {:.0} |",
        sftp.as_secs_f64(),
        rate(sftp)
    );
    println!(
        "| OpenSSH client, `ssh host cat` (reference) | {:.2} | {:.0} |",
        openssh.as_secs_f64(),
        rate(openssh)
    );
}

async fn drain(reader: &mut (impl tokio::io::AsyncRead + Unpin)) -> usize {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0;
    loop {
        let n = reader.read(&mut buf).await.expect("read");
        if n == 0 {
            return total;
        }
        total += n;
    }
}

async fn median<F, Fut>(runs: usize, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    let mut times = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let n = f().await;
        times.push(start.elapsed());
        assert_eq!(n, SIZE_MIB * MIB, "read everything");
    }
    times.sort();
    times[runs / 2]
}
