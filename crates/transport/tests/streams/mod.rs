//! Streams over SSH and locally: large data and tar trees round trip, and
//! writing to a command that stopped reading fails instead of waiting.

use std::time::{Duration, Instant};

use nightshift_testbed::Sshd;
use nightshift_transport::{Command, ExitStatus};

use crate::connect;

/// Writes 8 MiB into a remote `cat >`, reads it back with `cat`, then copies
/// a tree from `tar -c` on `host` into `tar -x` on `target`, as a restore to
/// another host does; sshd shares this machine's files, so the results are
/// checked here.
async fn stream_round_trips(
    host: &nightshift_transport::Host,
    target: &nightshift_transport::Host,
    dir: &std::path::Path,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let data: Vec<u8> = (0..8 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let file = dir.join("blob");
    let quoted = nightshift_transport::shell_quote(&file.display().to_string());
    let mut writing = host
        .write_stream(&Command::new(format!("cat > {quoted}")))
        .await
        .expect("write stream");
    writing.write_all(&data).await.expect("write");
    assert!(writing.finish().await.expect("finish").status.success());
    assert_eq!(std::fs::read(&file).expect("written"), data);

    let mut reading = host
        .read_stream(&Command::new(format!("cat {quoted}")))
        .await
        .expect("read stream");
    let mut back = Vec::new();
    reading.read_to_end(&mut back).await.expect("read");
    assert!(reading.finish().await.expect("finish").status.success());
    assert_eq!(back, data);

    let (src, dst) = (dir.join("src"), dir.join("dst"));
    std::fs::create_dir_all(src.join("etc/nginx")).expect("mkdir");
    std::fs::create_dir_all(&dst).expect("mkdir");
    std::fs::write(src.join("etc/nginx/site.conf"), "listen 80;\n").expect("write");
    std::fs::copy(&file, src.join("blob")).expect("copy");
    let q = |p: &std::path::Path| nightshift_transport::shell_quote(&p.display().to_string());
    let mut tar_out = host
        .read_stream(&Command::new(format!("tar -C {} -cf - .", q(&src))))
        .await
        .expect("tar -c");
    let mut tar_in = target
        .write_stream(&Command::new(format!("tar -C {} -xf -", q(&dst))))
        .await
        .expect("tar -x");
    tokio::io::copy(&mut tar_out, &mut tar_in)
        .await
        .expect("copy");
    assert!(
        tar_out
            .finish()
            .await
            .expect("tar -c finish")
            .status
            .success()
    );
    assert!(
        tar_in
            .finish()
            .await
            .expect("tar -x finish")
            .status
            .success()
    );
    let diff = std::process::Command::new("diff")
        .arg("-r")
        .arg(&src)
        .arg(&dst)
        .output()
        .expect("diff");
    assert!(
        diff.status.success(),
        "{}",
        String::from_utf8_lossy(&diff.stdout)
    );

    let missing = host
        .read_stream(&Command::new("cat /nonexistent/nightshift"))
        .await
        .expect("starts");
    let out = missing.finish().await.expect("finishes");
    assert_eq!(out.status, ExitStatus::Code(1));
    assert!(
        out.stderr.text().contains("No such file"),
        "{}",
        out.stderr.text()
    );
}

#[tokio::test]
async fn streams_round_trip_over_ssh_and_locally() {
    let sshd = Sshd::start().expect("sshd");
    let ssh = nightshift_transport::Host::Ssh(connect(&sshd).await);
    let other = nightshift_transport::Host::Ssh(connect(&sshd).await);
    let dir = tempfile::tempdir().expect("tempdir");
    stream_round_trips(&ssh, &other, dir.path()).await;
    let local = nightshift_transport::Host::Local(nightshift_transport::Local);
    let dir = tempfile::tempdir().expect("tempdir");
    stream_round_trips(&local, &local, dir.path()).await;
}

#[tokio::test]
async fn writing_to_a_command_that_stopped_reading_fails_instead_of_waiting() {
    use tokio::io::AsyncWriteExt;
    let sshd = Sshd::start().expect("sshd");
    let session = connect(&sshd).await;
    let started = Instant::now();
    let mut writing = session
        .write_stream(&Command::new("echo full >&2; exit 3"))
        .await
        .expect("starts");
    let chunk = vec![0u8; 1 << 20];
    let mut failed = None;
    for _ in 0..256 {
        if let Err(err) = writing.write_all(&chunk).await {
            failed = Some(err);
            break;
        }
    }
    let err = failed.expect("a write fails once the command is gone");
    assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe, "{err}");
    let out = writing.finish().await.expect("the outcome");
    assert_eq!(out.status, ExitStatus::Code(3));
    assert_eq!(out.stderr.text(), "full\n");
    assert!(started.elapsed() < Duration::from_secs(10));
}
