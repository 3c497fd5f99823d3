//! The Pacemaker authkey Secret: created with 4096 random bytes when missing, never changed when
//! present (replacing the key would cut every remote node off the cluster), never logged.

use std::collections::BTreeMap;
use std::io::Read;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};

/// Key inside the Secret, as the chart mounts it (`/etc/pacemaker/authkey`).
pub const AUTHKEY_KEY: &str = "authkey";
/// Pacemaker's recommended key length (`dd if=/dev/urandom bs=4096 count=1`).
pub const AUTHKEY_LEN: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum AuthkeyError {
    #[error("reading the authkey Secret {namespace}/{name}: {source}")]
    Api {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "Secret {namespace}/{name} exists but has no non-empty {AUTHKEY_KEY:?} key; add the cluster's /etc/pacemaker/authkey under that key (the controller never overwrites an existing Secret)"
    )]
    NoKey { namespace: String, name: String },
    #[error("reading /dev/urandom: {0}")]
    Random(std::io::Error),
}

/// Whether the Secret was created now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    Existing,
    Created,
}

pub async fn ensure(api: &Api<Secret>, name: &str) -> Result<Ensured, AuthkeyError> {
    let ns = api.namespace().unwrap_or("default").to_string();
    let err = |source| AuthkeyError::Api {
        namespace: ns.clone(),
        name: name.to_string(),
        source,
    };
    if let Some(s) = api.get_opt(name).await.map_err(err)? {
        let has_key = s
            .data
            .as_ref()
            .and_then(|d| d.get(AUTHKEY_KEY))
            .is_some_and(|v| !v.0.is_empty());
        return if has_key {
            Ok(Ensured::Existing)
        } else {
            Err(AuthkeyError::NoKey {
                namespace: ns,
                name: name.into(),
            })
        };
    }
    let secret = new_secret(name, random_key()?);
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(Ensured::Created),
        // Another replica (or an admin) was faster: theirs stands.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Ensured::Existing),
        Err(e) => Err(err(e)),
    }
}

fn random_key() -> Result<Vec<u8>, AuthkeyError> {
    let mut key = vec![0u8; AUTHKEY_LEN];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .map_err(AuthkeyError::Random)?;
    Ok(key)
}

fn new_secret(name: &str, key: Vec<u8>) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_string(),
                "kubemaker".to_string(),
            )])),
            annotations: Some(BTreeMap::from([(
                "kubemaker.io/description".to_string(),
                "Pacemaker authkey shared by the cluster nodes and every remote node; copy it to /etc/pacemaker/authkey on each cluster node".to_string(),
            )])),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(AUTHKEY_KEY.to_string(), ByteString(key))])),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_key_is_random_and_full_length() {
        let a = random_key().unwrap();
        let b = random_key().unwrap();
        assert_eq!(a.len(), AUTHKEY_LEN);
        assert_ne!(a, b);
        let s = new_secret("k", a.clone());
        assert_eq!(s.data.unwrap()[AUTHKEY_KEY].0, a);
        // Debug output of the error types never carries key bytes: there are none in them.
        let e = AuthkeyError::NoKey {
            namespace: "ns".into(),
            name: "k".into(),
        };
        assert!(e.to_string().contains("ns/k"));
    }
}
