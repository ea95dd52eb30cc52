//! Runnable examples of bao-kms-provider; see `src/bin/`.
//!
//! - `kms_client`: a KMS v2 client over the plugin's Unix socket (Status, Encrypt, Decrypt, and
//!   waiting for a key rotation to be promoted), used by the quickstart.
//! - `drive_core`: the IO-free core driven by hand against the Transit model, printing every
//!   output: the shortest way to see how the provider works.

use std::path::PathBuf;

use bao_kms_proto::KeyManagementServiceClient;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

/// Connects a KMS v2 client to the plugin's Unix socket.
///
/// # Errors
/// When the socket cannot be reached.
pub async fn connect(socket: PathBuf) -> anyhow::Result<KeyManagementServiceClient<Channel>> {
    // The URI is required by tonic but unused: the connector dials the socket.
    let channel = Endpoint::try_from("http://[::]:50051")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await?;
    Ok(KeyManagementServiceClient::new(channel))
}
