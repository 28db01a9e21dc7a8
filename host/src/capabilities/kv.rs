//! `faas:platform/kv`: key-value read models in the caller's namespace.

use super::PlatformCtx;
use super::{MAX_KV_KEY, MAX_KV_VALUE};
use crate::bindings::kv::{self as wit, KvError};
use crate::store::StoreError;

/// Entries returned by one `list`.
const MAX_LIST: u32 = 1000;

fn check_key(key: &str) -> Result<(), KvError> {
    if key.is_empty() || key.len() > MAX_KV_KEY || key.contains('\0') {
        return Err(KvError::InvalidRequest(format!("keys are 1-{MAX_KV_KEY} bytes without NUL")));
    }
    Ok(())
}

fn check_value(value: &[u8]) -> Result<(), KvError> {
    if value.len() > MAX_KV_VALUE {
        return Err(KvError::InvalidRequest(format!("value is {} bytes; the limit is {MAX_KV_VALUE}", value.len())));
    }
    Ok(())
}

fn unavailable(error: crate::store::StoreError) -> KvError {
    tracing::error!(%error, "kv store failure");
    KvError::Unavailable("the key-value store is unavailable; retry".into())
}

/// A failed write: superseded step attempts are told so (see `StepFence`).
fn write_failed(platform: &super::PlatformCtx) -> impl FnOnce(StoreError) -> KvError + '_ {
    move |error| match error {
        StoreError::Fenced(saga) => KvError::Unavailable(super::superseded(&platform.access.namespace, &saga)),
        other => unavailable(other),
    }
}

impl wit::Host for PlatformCtx {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, KvError> {
        check_key(&key)?;
        let p = &*self;
        p.caps.stores.kv.kv_get(&p.access.namespace, &key).await.map_err(unavailable)
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), KvError> {
        check_key(&key)?;
        check_value(&value)?;
        let p = &*self;
        p.caps.stores.kv.kv_set(&p.access.namespace, &key, &value, p.fence.as_ref()).await.map_err(write_failed(p))
    }

    async fn delete(&mut self, key: String) -> Result<bool, KvError> {
        check_key(&key)?;
        let p = &*self;
        p.caps.stores.kv.kv_delete(&p.access.namespace, &key, p.fence.as_ref()).await.map_err(write_failed(p))
    }

    async fn list(
        &mut self,
        prefix: String,
        start_after: Option<String>,
        limit: u32,
    ) -> Result<Vec<(String, Vec<u8>)>, KvError> {
        let p = &*self;
        let limit = limit.min(MAX_LIST);
        p.caps.stores.kv.kv_list(&p.access.namespace, &prefix, start_after.as_deref(), limit).await.map_err(unavailable)
    }

    async fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> Result<bool, KvError> {
        check_key(&key)?;
        if let Some(value) = &new {
            check_value(value)?;
        }
        let p = &*self;
        p.caps
            .stores
            .kv
            .kv_compare_and_swap(&p.access.namespace, &key, expected.as_deref(), new.as_deref(), p.fence.as_ref())
            .await
            .map_err(write_failed(p))
    }
}
