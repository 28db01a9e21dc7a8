//! `GET /v1/kafka`: the Kafka triggers as every node runs them. Each node consumes only the
//! partitions its consumer group gave it, so the node asked reports its own (assigned
//! partitions with their lag, records handled, failed, dead-lettered and dropped since it
//! started, partitions blocked on a dead-letter topic) and gathers the others' (`local=true`;
//! see `peers`), one entry per node.

use super::Admin;
use super::extract::Query;
use super::peers;
use crate::error::ApiError;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// `?local=true`: this node only (what nodes ask each other for).
#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct KafkaParams {
    #[serde(default)]
    local: bool,
}

pub async fn status(
    State(admin): State<Arc<Admin>>,
    Query(params): Query<KafkaParams>,
) -> Result<Json<Value>, ApiError> {
    let mut nodes = vec![this_node(&admin).await];
    if !params.local {
        let peers = peers::peers(&admin).await;
        let asked = KafkaParams { local: true };
        let answers =
            futures::future::join_all(peers.iter().map(|peer| peers::get_json(&admin, peer, "/v1/kafka", &asked)))
                .await;
        for (peer, answer) in peers.iter().zip(answers) {
            nodes.push(match answer {
                Ok(mut body) => body["nodes"].get_mut(0).map(Value::take).unwrap_or_default(),
                Err(error) => json!({ "node": peer.id, "ok": false, "error": error }),
            });
        }
    }
    Ok(Json(json!({ "nodes": nodes })))
}

/// This node's triggers, with what `/metrics` says of each partition and topic.
async fn this_node(admin: &Admin) -> Value {
    let node = admin.leases.node();
    let Some(kafka) = &admin.kafka else {
        return json!({ "node": node, "ok": true, "configured": false });
    };
    let mut status = kafka.status().await;
    let lag = series(&admin.metrics.kafka_lag, &["function", "topic", "partition"]);
    let records = series(&admin.metrics.kafka_records, &["function", "topic", "outcome"]);
    for trigger in status["triggers"].as_array_mut().into_iter().flatten() {
        let function = trigger["function"].as_str().unwrap_or_default().to_owned();
        for assigned in trigger["assigned"].as_array_mut().into_iter().flatten() {
            let key = [function.clone(), text(&assigned["topic"]), text(&assigned["partition"])];
            assigned["lag"] = lag.get(key.as_slice()).map_or(Value::Null, |v| json!(*v as i64));
        }
        let mut counts: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
        for topic in trigger["topics"].as_array().into_iter().flatten() {
            let topic = text(topic);
            let of_topic = counts.entry(topic.clone()).or_default();
            for outcome in ["handled", "failed", "dead_lettered", "dropped"] {
                let key = vec![function.clone(), topic.clone(), outcome.to_owned()];
                of_topic.insert(outcome.to_owned(), records.get(&key).map_or(0, |v| *v as i64));
            }
        }
        trigger["records"] = json!(counts);
    }
    status["node"] = json!(node);
    status["ok"] = json!(true);
    status["configured"] = json!(true);
    status
}

/// Every series of a metric family, by its label values in the order of `labels`. Read from
/// what the collector holds, so asking creates no series.
fn series(collector: &impl prometheus::core::Collector, labels: &[&str]) -> BTreeMap<Vec<String>, f64> {
    let mut values = BTreeMap::new();
    for family in collector.collect() {
        let counter = family.get_field_type() == prometheus::proto::MetricType::COUNTER;
        for metric in family.get_metric() {
            let pairs = metric.get_label();
            let key: Option<Vec<String>> = labels
                .iter()
                .map(|name| pairs.iter().find(|p| p.name() == *name).map(|p| p.value().to_owned()))
                .collect();
            let value = if counter { metric.get_counter().get_value() } else { metric.get_gauge().get_value() };
            if let Some(key) = key {
                values.insert(key, value);
            }
        }
    }
    values
}

fn text(value: &Value) -> String {
    value.as_str().map_or_else(|| value.to_string(), str::to_owned)
}
