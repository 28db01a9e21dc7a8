//! An HTTP endpoint that publishes to Kafka.
//!
//! `POST /orders/publish` with `{"order_id":"o-1","customer":"c-7","amount_cents":1250}` publishes
//! the order to topic `orders` (key = order id, so one order's records stay in order on one
//! partition) and answers `202 {"partition":…,"offset":…}` once the broker has acknowledged it.
//! Deploy with `--grant-publish orders`; a malformed body is `400`, a broker that does not
//! acknowledge is `503`.

use faas_sdk::kafka::{self, PublishError};
use faas_sdk::{IntoResponse, Request, RequestExt, StatusCode, http_handler, json};
use serde::{Deserialize, Serialize};
use serde_json::json as j;

#[derive(Debug, Serialize, Deserialize)]
struct Order {
    order_id: String,
    customer: String,
    amount_cents: u64,
}

#[http_handler]
fn serve(req: Request) -> impl IntoResponse {
    let topic = req.query_param("topic").unwrap_or_else(|| "orders".into());
    let order: Order = match req.json() {
        Ok(order) => order,
        Err(error) => return json(StatusCode::BAD_REQUEST, &j!({ "error": error.to_string() })),
    };
    match kafka::publish_json(&topic, &order.order_id, &order) {
        Ok(delivery) => {
            json(StatusCode::ACCEPTED, &j!({ "partition": delivery.partition, "offset": delivery.offset }))
        }
        Err(error @ PublishError::AccessDenied(_)) => json(StatusCode::FORBIDDEN, &j!({ "error": error.to_string() })),
        Err(error @ PublishError::InvalidRequest(_)) => {
            json(StatusCode::BAD_REQUEST, &j!({ "error": error.to_string() }))
        }
        Err(error) => json(StatusCode::SERVICE_UNAVAILABLE, &j!({ "error": error.to_string() })),
    }
}
