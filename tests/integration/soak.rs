//! Invariants of two-phase commit and sagas under concurrency and faults, not examples: many
//! clients at once with the recovery sweep running every 100 ms, kill -9 at random moments, and a
//! node frozen (SIGSTOP) past its heartbeat timeout while another node on the same PostgreSQL
//! takes its work over. Afterwards money is conserved exactly, every transaction is applied on
//! both ledgers or on neither, and every answer a client got matches the ledgers.

use crate::backend_tests;
use crate::sagas::{Rng, assert_sagas_settled_and_conserved, random_orders, server_post, stocked_shop};
use crate::support::{Backend, Database, Options, Server, components, eventually, spec};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

backend_tests!(
    concurrent_transfers_conserve_money_with_a_busy_sweep,
    transfers_survive_kill_9_at_random_moments,
    concurrent_sagas_settle_with_a_busy_sweep,
);

mod two_nodes {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn transfers_survive_a_node_paused_past_its_timeout() {
        super::transfers_survive_a_node_paused_past_its_timeout().await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sagas_survive_a_node_paused_past_its_timeout() {
        super::sagas_survive_a_node_paused_past_its_timeout().await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_paused_step_attempt_has_no_effect_after_its_saga_moved() {
        super::a_paused_step_attempt_has_no_effect_after_its_saga_moved().await
    }
}

const BANKS: [&str; 2] = ["bank-east", "bank-west"];
const ACCOUNTS: usize = 4;
const START: i64 = 1000;
/// The sweep as often as the reproduction needed to catch it deciding live work.
const BUSY_SWEEP: [&str; 2] = ["--recovery-interval", "100ms"];

fn seed() -> u64 {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    println!("seed {seed}");
    seed
}

fn args(extra: &[&str]) -> Vec<String> {
    extra.iter().map(|a| (*a).to_owned()).collect()
}

/// Both ledgers deployed, [`ACCOUNTS`] accounts of [`START`] on each.
async fn ledgers(server: &Server) {
    for bank in BANKS {
        server.deploy_ok(bank, components().bytes("ledger"), spec(&[&format!("/{bank}/...")], json!({}))).await;
    }
    for bank in BANKS {
        for a in 0..ACCOUNTS {
            let (status, body) = server.post(&format!("/{bank}/accounts/a{a}/deposit?amount={START}")).await;
            assert_eq!(status, 200, "{body}");
        }
    }
}

/// What a client sent and what it was told.
#[derive(Debug, Clone)]
struct Sent {
    body: Value,
    from_bank: &'static str,
    /// `committed` / `aborted` with the transaction id; none when the answer was lost.
    answer: Option<(String, String)>,
}

/// One client: random transfers in both directions until `until`, each with its own
/// idempotency key; a transfer either side may be unable to cover aborts, which is fine.
async fn client(data: String, name: String, mut rng: Rng, until: Instant) -> Vec<Sent> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let mut sent = Vec::new();
    let mut n = 0;
    while Instant::now() < until {
        let from = rng.below(2) as usize;
        let body = json!({
            "from": format!("a{}", rng.below(ACCOUNTS as u64)),
            "to_function": BANKS[1 - from],
            "to": format!("a{}", rng.below(ACCOUNTS as u64)),
            "amount": 1 + rng.below(400),
            "key": format!("{name}-{n}"),
            // Slow enough that sweeps, kills and pauses land between the phases.
            "prepare_delay_ms": rng.below(30),
        });
        n += 1;
        let response = http.post(format!("{data}/{}/transfer", BANKS[from])).json(&body).send().await;
        let Ok(response) = response else {
            // The server is gone (killed): this answer is lost, and so is the client.
            sent.push(Sent { body, from_bank: BANKS[from], answer: None });
            return sent;
        };
        let status = response.status();
        let answer = match response.json::<Value>().await {
            Ok(b) if status == 200 || status == 409 => {
                b["outcome"].as_str().zip(b["tx"].as_str()).map(|(o, t)| (o.to_owned(), t.to_owned()))
            }
            _ => None,
        };
        sent.push(Sent { body, from_bank: BANKS[from], answer });
    }
    sent
}

async fn run_clients(data: &str, clients: usize, rng: &mut Rng, for_how_long: Duration) -> Vec<Sent> {
    let until = Instant::now() + for_how_long;
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            tokio::spawn(client(
                data.to_owned(),
                format!("c{c}-{}", rng.below(1 << 40)),
                Rng(rng.below(u64::MAX) | 1),
                until,
            ))
        })
        .collect();
    let mut sent = Vec::new();
    for task in tasks {
        sent.extend(task.await.unwrap());
    }
    sent
}

/// Every transaction in the log, through the paged list.
async fn all_transactions(server: &Server) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(cursor) => format!("/v1/transactions?limit=500&after={cursor}"),
            None => "/v1/transactions?limit=500".to_owned(),
        };
        let (status, page) = server.get_json(&path).await;
        assert_eq!(status, 200, "{page}");
        all.extend(page["transactions"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return all,
        }
    }
}

/// Waits until every transaction is committed or aborted, then checks the ledgers against the
/// log and the log against what the clients were told.
async fn assert_ledgers_consistent(server: &Server, sent: &[Sent]) {
    let log = eventually("every transaction is committed or aborted", Duration::from_secs(90), async || {
        let log = all_transactions(server).await;
        let open: Vec<&Value> = log.iter().filter(|t| t["status"] != "committed" && t["status"] != "aborted").collect();
        if open.is_empty() { Ok(log) } else { Err(format!("open: {}\n{}", json!(open), server.logs())) }
    })
    .await;
    let status: HashMap<&str, &str> =
        log.iter().map(|t| (t["id"].as_str().unwrap(), t["status"].as_str().unwrap())).collect();

    let mut total = 0;
    let mut applied: HashMap<(String, String), HashSet<String>> = HashMap::new();
    for bank in BANKS {
        for a in 0..ACCOUNTS {
            let (code, account) = server.get_json_data(&format!("/{bank}/accounts/a{a}")).await;
            assert_eq!(code, 200, "{account}");
            assert_eq!(account["holds"], json!({}), "{bank}/a{a} still holds something: {account}");
            total += account["balance"].as_i64().unwrap();
            let ids = account["applied"].as_array().unwrap().iter().map(|i| i.as_str().unwrap().to_owned());
            applied.insert((bank.to_owned(), format!("a{a}")), ids.collect());
        }
    }

    // Every transaction applied on both participants or on neither, as its log says.
    for tx in &log {
        let id = tx["id"].as_str().unwrap();
        for participant in tx["participants"].as_array().unwrap() {
            let payload: Value = serde_json::from_str(participant["payload"].as_str().unwrap()).unwrap();
            let key =
                (participant["function"].as_str().unwrap().to_owned(), payload["account"].as_str().unwrap().to_owned());
            let done = applied[&key].contains(id);
            assert_eq!(
                done,
                status[id] == "committed",
                "transaction {id} ({}) on {key:?}: applied = {done}",
                status[id]
            );
        }
    }
    // Nothing applied that the log does not call committed.
    for (key, ids) in &applied {
        for id in ids {
            assert_eq!(status.get(id.as_str()).copied(), Some("committed"), "{key:?} applied {id}");
        }
    }
    // Every answer matches the log.
    let mut answered = 0;
    for s in sent {
        if let Some((outcome, id)) = &s.answer {
            answered += 1;
            assert_eq!(status.get(id.as_str()).copied(), Some(outcome.as_str()), "client was told {outcome} for {id}");
        }
    }
    let committed = status.values().filter(|s| **s == "committed").count();
    println!("{} transactions ({committed} committed), {answered} of {} answers known", log.len(), sent.len());
    assert_eq!(total, 2 * ACCOUNTS as i64 * START, "money is conserved exactly");
    assert!(committed > 0 && committed < log.len(), "the run exercises both outcomes");
}

/// The reproduction: three clients for 12 s, no crash, the sweep every 100 ms.
async fn concurrent_transfers_conserve_money_with_a_busy_sweep(backend: Backend) {
    let mut rng = Rng(seed());
    let db = Database::create(backend).await;
    let server =
        Server::start_with(Options { database_url: db.url, extra_args: args(&BUSY_SWEEP), ..Default::default() }).await;
    ledgers(&server).await;
    let sent = run_clients(&server.data, 3, &mut rng, Duration::from_secs(12)).await;
    assert!(sent.iter().all(|s| s.answer.is_some()), "no crash, so every client got an answer");
    assert_ledgers_consistent(&server, &sent).await;
    assert!(!server.logs().contains("recovering in-doubt transaction"), "a live node recovered its own live work");
}

/// 20 rounds of load, each ended by kill -9 at a random moment and a restart on the same data
/// dir and database. Lost answers are asked again with the same key after the last restart: the
/// same transaction answers, nothing runs twice.
async fn transfers_survive_kill_9_at_random_moments(backend: Backend) {
    let mut rng = Rng(seed());
    let db = Database::create(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        database_url: db.url.clone(),
        data_dir: Some(dir.path().to_owned()),
        extra_args: args(&BUSY_SWEEP),
        ..Default::default()
    };
    let mut server = Server::start_with(options.clone()).await;
    ledgers(&server).await;
    let mut sent = Vec::new();
    let mut recovered = 0;
    for _ in 0..20 {
        let until = Duration::from_millis(150 + rng.below(900));
        let data = server.data.clone();
        let seed = rng.below(u64::MAX) | 1;
        let load = tokio::spawn(async move { run_clients(&data, 3, &mut Rng(seed), Duration::from_secs(3600)).await });
        tokio::time::sleep(until).await;
        server.kill();
        // The clients' open requests fail now; what they were told so far is kept.
        // Each client stops at its first failed request.
        sent.extend(load.await.unwrap());
        server = Server::start_with(options.clone()).await;
        recovered += usize::from(server.logs().contains("recovering in-doubt transaction"));
    }
    println!("{recovered} restarts recovered in-doubt transactions");

    // Ask again for every transfer whose answer was lost.
    let http = reqwest::Client::new();
    let mut lost = 0;
    for s in sent.iter_mut().filter(|s| s.answer.is_none()) {
        lost += 1;
        let response =
            http.post(format!("{}/{}/transfer", server.data, s.from_bank)).json(&s.body).send().await.unwrap();
        let body: Value = response.json().await.unwrap();
        let (outcome, id) = (body["outcome"].as_str(), body["tx"].as_str());
        s.answer = Some((outcome.expect("an outcome").to_owned(), id.unwrap().to_owned()));
    }
    println!("{lost} lost answers asked again");
    assert_ledgers_consistent(&server, &sent).await;
}

/// Two nodes on one PostgreSQL with a 1 s node timeout; clients on both; node A is frozen
/// (SIGSTOP) for 2.5 s three times, so node B takes over what A was deciding, and A wakes up
/// to find itself fenced.
async fn transfers_survive_a_node_paused_past_its_timeout() {
    let mut rng = Rng(seed());
    let db = Database::create(Backend::Postgres).await;
    let fast = args(&["--node-timeout", "1s", "--recovery-interval", "200ms"]);
    let options = Options { database_url: db.url.clone(), extra_args: fast, ..Default::default() };
    let a = Server::start_with(options.clone()).await;
    let b = Server::start_with(options).await;
    ledgers(&a).await;
    for bank in BANKS {
        wait_until_served(&b, &format!("/{bank}/accounts/a0")).await;
    }

    let (data_a, data_b) = (a.data.clone(), b.data.clone());
    let (seed_a, seed_b) = (rng.below(u64::MAX) | 1, rng.below(u64::MAX) | 1);
    let load_a = tokio::spawn(async move { run_clients(&data_a, 2, &mut Rng(seed_a), Duration::from_secs(14)).await });
    let load_b = tokio::spawn(async move { run_clients(&data_b, 2, &mut Rng(seed_b), Duration::from_secs(14)).await });
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1000 + rng.below(1000))).await;
        a.pause();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        a.resume();
    }
    let mut sent = load_a.await.unwrap();
    sent.extend(load_b.await.unwrap());
    assert!(
        b.logs().contains("recovering in-doubt transaction"),
        "node B never took over a transaction of the paused node A:\n{}",
        b.logs()
    );
    assert_ledgers_consistent(&b, &sent).await;
}

/// Waits until the function at `path` is deployed on `server` (the router's own 404 carries an
/// error code; a function's answers do not).
async fn wait_until_served(server: &Server, path: &str) {
    eventually(&format!("{path} is served on the second node"), Duration::from_secs(30), async || {
        let (status, body) = server.get_json_data(path).await;
        if status != 404 || body["error"]["code"] != "not_found" { Ok(()) } else { Err(format!("{status} {body}")) }
    })
    .await
}

/// Sagas, started by three clients at once, with the sweep every 100 ms and no crash: every
/// saga settles once, with the order invariants of the crash test.
async fn concurrent_sagas_settle_with_a_busy_sweep(backend: Backend) {
    let mut rng = Rng(seed());
    let db = Database::create(backend).await;
    let server =
        Server::start_with(Options { database_url: db.url, extra_args: args(&BUSY_SWEEP), ..Default::default() }).await;
    stocked_shop(&server).await;
    let orders = random_orders(&mut rng, "busy", 60);
    let ids = start_orders(&server, &orders, 3).await;
    assert_eq!(ids.len(), orders.len(), "no crash, so every saga started");
    assert_sagas_settled_and_conserved(&server, &orders, &ids).await;
    assert!(!server.logs().contains("resumed in-flight sagas"), "a live node resumed its own live sagas");
}

/// Sagas on two nodes sharing PostgreSQL, node A frozen past its timeout twice: B takes A's
/// sagas over; when A wakes, its writes are fenced and every saga still ends once.
async fn sagas_survive_a_node_paused_past_its_timeout() {
    let mut rng = Rng(seed());
    let db = Database::create(Backend::Postgres).await;
    let fast = args(&["--node-timeout", "1s", "--recovery-interval", "200ms"]);
    let options = Options { database_url: db.url.clone(), extra_args: fast, ..Default::default() };
    let a = Server::start_with(options.clone()).await;
    let b = Server::start_with(options).await;
    stocked_shop(&a).await;
    for path in ["/payments/accounts/c0", "/inventory/items/s0", "/shipping/x", "/orders"] {
        wait_until_served(&b, path).await;
    }
    let mut orders = random_orders(&mut rng, "paused", 60);
    for order in &mut orders {
        // Slow steps (0.9-1.8 s a saga), so node A has sagas in flight whenever it is paused.
        // Amounts and quantities stay random: some payments and reservations are refused, the
        // case in which a frozen attempt's late write would leave a deduction without a refund
        // if the host did not fence step writes (see the test above).
        order["delay_ms"] = json!(300 + rng.below(300));
    }
    let (first, second) = orders.split_at(30);
    let starting = {
        let (a_orders, b_orders) = (first.to_vec(), second.to_vec());
        let (a, b) = (a.data.clone(), b.data.clone());
        tokio::spawn(async move {
            let (on_a, on_b) = tokio::join!(start_orders_at(&a, &a_orders, 2), start_orders_at(&b, &b_orders, 2));
            on_a.into_iter().chain(on_b).collect::<HashMap<_, _>>()
        })
    };
    let node_a = std::fs::read_to_string(a.data_dir.join("node-id")).unwrap();
    let node_b = std::fs::read_to_string(b.data_dir.join("node-id")).unwrap();
    for round in 0..2 {
        tokio::time::sleep(Duration::from_millis(300 + rng.below(500))).await;
        if round == 0 {
            // On a loaded machine the orders may start late, and a saga seen running may finish
            // before a pause lands: freeze A, then ask B whether a saga of A's is in flight (a
            // frozen node finishes nothing), and thaw and try again if not, so there is always
            // something for B to take over.
            let saga =
                eventually("node A frozen with a saga of its own in flight", Duration::from_secs(30), async || {
                    a.pause();
                    let (_, list) = b.get_json("/v1/sagas?status=running&limit=1000").await;
                    for saga in list["sagas"].as_array().into_iter().flatten() {
                        let id = saga["id"].as_str().unwrap();
                        let (_, view) = b.get_json(&format!("/v1/sagas/{id}")).await;
                        if view["owner"] == node_a.trim() {
                            return Ok(id.to_owned());
                        }
                    }
                    a.resume();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Err(list.to_string())
                })
                .await;
            // Frozen until B took that saga over (a loaded machine may sweep late), so the
            // wake-up below always finds it moved on. Watched in the saga's row, not in B's log:
            // a saga A had itself taken from B (B's heartbeat late on a loaded machine) goes
            // back to the runner B still has, without a new one.
            eventually("node B takes over a saga of node A", Duration::from_secs(30), async || {
                let (_, view) = b.get_json(&format!("/v1/sagas/{saga}")).await;
                if view["owner"] == node_b.trim() { Ok(()) } else { Err(format!("{view}\n{}", b.logs())) }
            })
            .await;
        } else {
            a.pause();
            tokio::time::sleep(Duration::from_millis(2500)).await;
        }
        a.resume();
    }
    let ids = starting.await.unwrap();
    assert_eq!(ids.len(), orders.len(), "every saga started (requests to A wait out its pauses)");
    assert_sagas_settled_and_conserved(&b, &orders, &ids).await;
}

/// The zombie-effect case, made deterministic: node A is frozen inside a payment step (before
/// it reads the balance); B takes the saga over, re-runs the step, which is refused (no money),
/// and the saga compensates. Then the account is funded and A wakes: its attempt now sees enough
/// money and tries to deduct. That write must be refused (its saga moved on), or the customer
/// pays for an order that was cancelled: a deduction without a refund.
async fn a_paused_step_attempt_has_no_effect_after_its_saga_moved() {
    let db = Database::create(Backend::Postgres).await;
    let fast = args(&["--node-timeout", "1s", "--recovery-interval", "200ms"]);
    let options = Options { database_url: db.url.clone(), extra_args: fast, ..Default::default() };
    let a = Server::start_with(options.clone()).await;
    let b = Server::start_with(options).await;
    stocked_shop(&a).await;
    for path in ["/payments/accounts/late", "/orders"] {
        wait_until_served(&b, path).await;
    }
    let mut order = json!({
        "order_id": "zombie", "customer": "late", "sku": "s0", "qty": 1, "amount": 100, "address": "1 Main St",
    });
    // Each step sleeps before it acts: long enough to freeze A inside the payment step.
    order["delay_ms"] = json!(2000);
    let (status, body) = server_post(&a.data, &order).await.expect("order accepted");
    assert_eq!(status, 202, "{body}");
    let saga = body["saga_id"].as_str().unwrap().to_owned();
    eventually("A runs the payment step", Duration::from_secs(10), async || {
        let (_, view) = a.get_json(&format!("/v1/sagas/{saga}")).await;
        if view["steps"][0]["attempts"].as_u64() >= Some(1) { Ok(()) } else { Err(view.to_string()) }
    })
    .await;
    a.pause();
    let view = eventually("B takes over, is refused and compensates", Duration::from_secs(30), async || {
        let (_, view) = b.get_json(&format!("/v1/sagas/{saga}")).await;
        if view["status"] == "compensated" { Ok(view) } else { Err(view.to_string()) }
    })
    .await;
    assert!(view["error"].as_str().unwrap_or_default().contains("insufficient funds"), "{view}");
    assert_eq!(b.post("/payments/accounts/late/deposit?amount=100").await.0, 200);
    a.resume();
    // A's attempt finishes one way or another, then its runner finds the saga owned by B.
    eventually("A gives the saga up", Duration::from_secs(10), async || {
        if a.logs().contains("saga was taken over by another node") { Ok(()) } else { Err(a.logs()) }
    })
    .await;
    let (_, account) = b.get_json_data("/payments/accounts/late").await;
    assert_eq!(account["balance"], 100, "the cancelled order's late attempt took money: {account}");
    assert!(
        a.logs().contains("a superseded step attempt tried to write; refused"),
        "A's late attempt never tried to write, so this run did not exercise the fence:\n{}",
        a.logs()
    );
    let (_, view) = b.get_json(&format!("/v1/sagas/{saga}")).await;
    assert_eq!(view["status"], "compensated", "{view}");
}

/// Starts every order (asynchronously) from `clients` concurrent clients; order id -> saga id.
async fn start_orders(server: &Server, orders: &[Value], clients: usize) -> HashMap<String, String> {
    start_orders_at(&server.data, orders, clients).await
}

async fn start_orders_at(data: &str, orders: &[Value], clients: usize) -> HashMap<String, String> {
    let chunks: Vec<Vec<Value>> = orders.chunks(orders.len().div_ceil(clients)).map(<[Value]>::to_vec).collect();
    let tasks: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let data = data.to_owned();
            tokio::spawn(async move {
                let mut ids = HashMap::new();
                for order in chunk {
                    // A 503 says "retry" (a node frozen mid-start had its database session ended
                    // under it), and so does giving up on a node frozen longer than the client's
                    // 10 s timeout (a loaded machine may take that long to hand its sagas over):
                    // a client sends the same order again, which the order id (the saga's
                    // idempotency key) makes safe.
                    for attempt in 1..=20 {
                        match server_post(&data, &order).await {
                            Ok((202, body)) => {
                                ids.insert(
                                    order["order_id"].as_str().unwrap().to_owned(),
                                    body["saga_id"].as_str().unwrap().to_owned(),
                                );
                            }
                            Ok((503, _)) | Err(()) if attempt < 20 => {
                                tokio::time::sleep(Duration::from_millis(200)).await;
                                continue;
                            }
                            other => println!("starting {} at {data}: {other:?}", order["order_id"]),
                        }
                        break;
                    }
                }
                ids
            })
        })
        .collect();
    let mut ids = HashMap::new();
    for task in tasks {
        ids.extend(task.await.unwrap());
    }
    ids
}
