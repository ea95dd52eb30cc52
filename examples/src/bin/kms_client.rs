//! A KMS v2 client over the plugin's Unix socket, as kube-apiserver would call it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bao_kms_proto::{DecryptRequest, EncryptRequest, StatusRequest};
use clap::{Parser, Subcommand};

/// Command line.
#[derive(Debug, Parser)]
struct Args {
    /// The plugin's socket.
    #[arg(long)]
    socket: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print Status.
    Status,
    /// Status, then Encrypt a 32-byte seed, then Decrypt it and compare.
    Roundtrip,
    /// Wait until Status reports a key_id different from `--from`, then print it.
    WaitKeyChange {
        /// The current key_id.
        #[arg(long)]
        from: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut client = bao_kms_examples::connect(args.socket)
        .await
        .context("connect")?;
    match args.command {
        Command::Status => {
            let status = client.status(StatusRequest {}).await?.into_inner();
            println!(
                "version={} healthz={} key_id={}",
                status.version, status.healthz, status.key_id
            );
        }
        Command::Roundtrip => {
            let status = client.status(StatusRequest {}).await?.into_inner();
            println!(
                "status: version={} healthz={} key_id={}",
                status.version, status.healthz, status.key_id
            );
            if status.healthz != "ok" {
                bail!("plugin is not healthy");
            }
            // A fixed, non-secret seed keeps the example reproducible; kube-apiserver uses random bytes.
            let seed: Vec<u8> = (0_u8..32).collect();
            let encrypted = client
                .encrypt(EncryptRequest {
                    plaintext: seed.clone(),
                    uid: "quickstart-encrypt".into(),
                })
                .await?
                .into_inner();
            println!(
                "encrypt: key_id={} ciphertext={} bytes, annotations:",
                encrypted.key_id,
                encrypted.ciphertext.len()
            );
            for (key, value) in &encrypted.annotations {
                println!("  {key}={}", String::from_utf8_lossy(value));
            }
            if encrypted.key_id != status.key_id {
                bail!("Encrypt key_id differs from Status key_id");
            }
            let decrypted = client
                .decrypt(DecryptRequest {
                    ciphertext: encrypted.ciphertext,
                    uid: "quickstart-decrypt".into(),
                    key_id: encrypted.key_id,
                    annotations: encrypted.annotations,
                })
                .await?
                .into_inner();
            if decrypted.plaintext != seed {
                bail!("Decrypt returned a different seed");
            }
            println!(
                "decrypt: round trip ok ({} bytes)",
                decrypted.plaintext.len()
            );
        }
        Command::WaitKeyChange { from, timeout } => {
            for _ in 0..timeout {
                let status = client.status(StatusRequest {}).await?.into_inner();
                if status.healthz == "ok" && !status.key_id.is_empty() && status.key_id != from {
                    println!("{}", status.key_id);
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            bail!("no new key_id within {timeout} s");
        }
    }
    Ok(())
}
