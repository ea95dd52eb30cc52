//! Raw Transit: the plugin's own OpenBao client (same TLS settings, same AppRole login, same
//! connection pool size), called directly with the same AAD and an explicit key version, so
//! the difference to the plugin rows is the plugin's own cost.

use anyhow::{Context as _, bail};
use bao_kms_core::{
    Aad, KeyId, KeyVersion, Plaintext, TransitCiphertext, TransitRequest, TransitResponse,
};
use bao_kms_runtime_tokio::adapters::client_settings;
use bao_kms_runtime_tokio::config::Config;
use bao_kms_runtime_tokio::openbao::OpenBaoClient;

/// A raw Transit client for the plugin's key.
#[derive(Clone, Debug)]
pub(crate) struct RawTransit {
    client: OpenBaoClient,
    key_version: KeyVersion,
    associated_data: String,
}

/// What a raw Encrypt returned, kept for the raw Decrypt cells.
#[derive(Clone, Debug)]
pub(crate) struct RawSealed {
    /// The plaintext that was encrypted.
    pub(crate) seed: Vec<u8>,
    /// The ciphertext as Transit wrote it.
    pub(crate) ciphertext: TransitCiphertext,
}

impl RawTransit {
    /// Builds the client from the plugin's configuration, logs in and reads the key's latest
    /// version. `key_id` is the plugin's active key_id: the AAD is the plugin's for that key.
    /// Blocking.
    pub(crate) fn connect(config: &Config, key_id: &str) -> anyhow::Result<Self> {
        let client = OpenBaoClient::new(client_settings(config)).context("openbao client")?;
        client.ensure_token().context("approle login")?;
        let TransitResponse::KeyMetadata(metadata) = client
            .execute(&TransitRequest::ReadKeyMetadata)
            .context("read key metadata")?
        else {
            bail!("unexpected answer to a key metadata read");
        };
        let key_version = KeyVersion::new(metadata.latest_version).context("key version")?;
        let key_id = KeyId::parse(key_id).map_err(|_| anyhow::anyhow!("malformed key_id"))?;
        let associated_data =
            Aad::v1(config.identity().key_scope(), &key_id, key_version).to_transit_base64();
        Ok(Self {
            client,
            key_version,
            associated_data,
        })
    }

    /// The OpenBao server version (`sys/health`). Blocking.
    pub(crate) fn server_version(&self) -> Option<String> {
        self.client.health().ok().map(|health| health.version)
    }

    /// HTTP requests this client sent so far.
    pub(crate) fn requests_sent(&self) -> u64 {
        self.client.requests_sent()
    }

    /// One Encrypt of `seed` with the explicit version and the AAD. Blocking.
    pub(crate) fn encrypt(&self, seed: Vec<u8>) -> Result<RawSealed, String> {
        let request = TransitRequest::Encrypt {
            plaintext: Plaintext::new(seed.clone()),
            key_version: self.key_version,
            associated_data: self.associated_data.clone(),
        };
        let answer = self
            .client
            .execute(&request)
            .map_err(|error| error.to_string())?;
        let TransitResponse::Encrypted { ciphertext, .. } = answer else {
            return Err("unexpected answer to encrypt".to_owned());
        };
        let ciphertext =
            TransitCiphertext::parse(ciphertext.as_bytes()).map_err(|error| error.to_string())?;
        Ok(RawSealed { seed, ciphertext })
    }

    /// One Decrypt of `item` with the AAD; a plaintext other than the seed is an error.
    /// Blocking.
    pub(crate) fn decrypt(&self, item: &RawSealed) -> Result<(), String> {
        let request = TransitRequest::Decrypt {
            ciphertext: item.ciphertext.clone(),
            associated_data: self.associated_data.clone(),
        };
        let answer = self
            .client
            .execute(&request)
            .map_err(|error| error.to_string())?;
        let TransitResponse::Decrypted { plaintext } = answer else {
            return Err("unexpected answer to decrypt".to_owned());
        };
        if plaintext.expose() != item.seed.as_slice() {
            return Err("decrypt returned a different plaintext".to_owned());
        }
        Ok(())
    }
}
