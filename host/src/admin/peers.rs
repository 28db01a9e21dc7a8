//! The other nodes on a shared database, as one node's control plane asks them for what only
//! they know (their logs, their Kafka partitions): every live node's heartbeat says where its
//! control plane answers (`--advertise-admin-url`), and a node asks with its own admin token
//! (nodes sharing a database share one). A node that does not answer is reported with the error,
//! never fails the caller's request: what the others said is still worth showing.

use super::Admin;
use serde::Serialize;
use serde_json::Value;
use std::sync::OnceLock;
use std::time::Duration;

/// How long a node waits for another's answer.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(3);

/// Another live node, and where its control plane answers.
pub struct Peer {
    pub id: String,
    pub admin_url: String,
}

/// The other nodes alive now that say where their control plane answers.
pub async fn peers(admin: &Admin) -> Vec<Peer> {
    let timeout = admin.workflows.node_timeout().as_millis() as i64;
    let now = crate::store::now_ms();
    match admin.stores.leases.nodes().await {
        Ok(nodes) => nodes
            .into_iter()
            .filter(|n| n.id != admin.leases.node() && !n.leaving && now - n.heartbeat_ms <= timeout)
            .filter_map(|n| Some(Peer { admin_url: n.admin_url?, id: n.id }))
            .collect(),
        Err(error) => {
            tracing::warn!(%error, "listing the nodes failed; answering for this node only");
            Vec::new()
        }
    }
}

/// The client nodes ask each other with (no redirects: a peer answers itself or not at all).
fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .connect_timeout(PEER_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a plain HTTP client builds")
    })
}

/// `GET <peer>/<path>?<query>` with the admin token.
pub fn request(token: Option<&str>, peer: &Peer, path: &str, query: &impl Serialize) -> reqwest::RequestBuilder {
    let request = client().get(format!("{}{path}", peer.admin_url)).query(query);
    match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
}

/// `peer`'s JSON answer to `GET <path>?<query>`; why not, as the error.
pub async fn get_json(admin: &Admin, peer: &Peer, path: &str, query: &impl Serialize) -> Result<Value, String> {
    let response = request(admin.token.as_deref(), peer, path, query)
        .timeout(PEER_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("{}: {e}", peer.admin_url))?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|e| format!("{}: {e}", peer.admin_url))?;
    if !status.is_success() {
        return Err(format!("{} answered {status}: {}", peer.admin_url, body["error"]["message"]));
    }
    Ok(body)
}
