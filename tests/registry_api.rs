//! The built-in registry speaks the Confluent Schema Registry REST API: ids, versions,
//! compatibility, status codes and error bodies as Confluent returns them, and state that
//! survives a restart.

use crate::common;

use serde_json::{Value, json};
use tickflow::codec::{RecordKind, RegistryClient};

const V1: &str =
    r#"{"type":"record","name":"T","namespace":"x","fields":[{"name":"a","type":"long"}]}"#;
/// V1 plus an optional field: backward compatible.
const V2: &str = r#"{"type":"record","name":"T","namespace":"x","fields":[{"name":"a","type":"long"},{"name":"b","type":"string","default":""}]}"#;
/// A new field without a default: cannot read V1 data.
const BAD: &str = r#"{"type":"record","name":"T","namespace":"x","fields":[{"name":"a","type":"long"},{"name":"c","type":"string"}]}"#;

struct Api {
    http: reqwest::Client,
    url: String,
}

impl Api {
    fn new(url: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: url.to_string(),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header("Content-Type", "application/vnd.schemaregistry.v1+json");
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert_eq!(ct, "application/vnd.schemaregistry.v1+json");
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }
}

#[tokio::test]
async fn register_read_and_evolve() {
    let reg = common::TestRegistry::start().await;
    let api = Api::new(&reg.url);

    let (s, b) = api
        .post("/subjects/t-value/versions", json!({"schema": V1}))
        .await;
    assert_eq!((s, &b), (200, &json!({"id": 1})));
    // Same schema again: same id, no new version.
    let (s, b) = api
        .post(
            "/subjects/t-value/versions",
            json!({"schema": V1, "schemaType": "AVRO"}),
        )
        .await;
    assert_eq!((s, &b), (200, &json!({"id": 1})));
    // Same schema under another subject: same id, version 1 there.
    assert_eq!(
        api.post("/subjects/u-value/versions", json!({"schema": V1}))
            .await
            .1,
        json!({"id": 1})
    );

    let (s, b) = api
        .post("/subjects/t-value/versions", json!({"schema": V2}))
        .await;
    assert_eq!((s, &b), (200, &json!({"id": 2})));
    let (s, b) = api
        .post("/subjects/t-value/versions", json!({"schema": BAD}))
        .await;
    assert_eq!(s, 409);
    assert_eq!(b["error_code"], 409);
    assert!(
        b["message"].as_str().unwrap().contains("incompatible"),
        "{b}"
    );

    assert_eq!(
        api.get("/subjects").await,
        (200, json!(["t-value", "u-value"]))
    );
    assert_eq!(
        api.get("/subjects/t-value/versions").await,
        (200, json!([1, 2]))
    );
    let (s, b) = api.get("/subjects/t-value/versions/latest").await;
    assert_eq!(s, 200);
    assert_eq!(
        (b["version"].clone(), b["id"].clone(), b["subject"].clone()),
        (json!(2), json!(2), json!("t-value"))
    );
    assert_eq!(
        api.get("/subjects/t-value/versions/1").await.1["schema"],
        json!(V1)
    );
    assert_eq!(
        api.get("/schemas/ids/2").await,
        (200, json!({"schema": V2}))
    );
    assert_eq!(
        api.get("/schemas/ids/1/versions").await.1,
        json!([
            {"subject": "t-value", "version": 1}, {"subject": "u-value", "version": 1}
        ])
    );
    let (s, b) = api.post("/subjects/t-value", json!({"schema": V2})).await;
    assert_eq!(
        (s, b["version"].clone(), b["id"].clone()),
        (200, json!(2), json!(2))
    );

    // Compatibility checks without registering.
    let (s, b) = api
        .post(
            "/compatibility/subjects/t-value/versions/latest",
            json!({"schema": BAD}),
        )
        .await;
    assert_eq!((s, b), (200, json!({"is_compatible": false})));
    let (_, b) = api
        .post(
            "/compatibility/subjects/t-value/versions/latest?verbose=true",
            json!({"schema": V2}),
        )
        .await;
    assert_eq!(b, json!({"is_compatible": true, "messages": []}));
}

#[tokio::test]
async fn errors_look_like_confluent() {
    let reg = common::TestRegistry::start().await;
    let api = Api::new(&reg.url);
    let expect = |got: (u16, Value), status: u16, code: u32| {
        assert_eq!(got.0, status, "{got:?}");
        assert_eq!(got.1["error_code"], json!(code), "{got:?}");
        assert!(got.1["message"].is_string());
    };
    expect(api.get("/subjects/nope/versions").await, 404, 40401);
    expect(api.get("/schemas/ids/77").await, 404, 40403);
    expect(
        api.post("/subjects/t/versions", json!({"schema": "{not json"}))
            .await,
        422,
        42201,
    );
    expect(
        api.post(
            "/subjects/t/versions",
            json!({"schema": "{\"type\":\"recordx\"}"}),
        )
        .await,
        422,
        42201,
    );
    expect(
        api.post(
            "/subjects/t/versions",
            json!({"schema": V1, "schemaType": "PROTOBUF"}),
        )
        .await,
        422,
        42201,
    );
    api.post("/subjects/t/versions", json!({"schema": V1}))
        .await;
    expect(api.get("/subjects/t/versions/9").await, 404, 40402);
    expect(api.get("/subjects/t/versions/zero").await, 422, 42202);
    expect(
        api.post("/subjects/t", json!({"schema": V2})).await,
        404,
        40403,
    );
    expect(api.get("/config/t").await, 404, 40408);
    expect(
        api.put("/config", json!({"compatibility": "SIDEWAYS"}))
            .await,
        422,
        42203,
    );
}

#[tokio::test]
async fn compatibility_levels_are_honoured() {
    let reg = common::TestRegistry::start().await;
    let api = Api::new(&reg.url);
    assert_eq!(
        api.get("/config").await.1,
        json!({"compatibilityLevel": "BACKWARD"})
    );
    api.post("/subjects/t/versions", json!({"schema": V1}))
        .await;
    // FORWARD: old readers must read new data. Dropping a field without default is fine for
    // them only if they have a default for it; V1's reader needs `a`, so removing it fails.
    assert_eq!(
        api.put("/config/t", json!({"compatibility": "FORWARD"}))
            .await,
        (200, json!({"compatibility": "FORWARD"}))
    );
    let no_a = r#"{"type":"record","name":"T","namespace":"x","fields":[{"name":"z","type":"int","default":0}]}"#;
    assert_eq!(
        api.post("/subjects/t/versions", json!({"schema": no_a}))
            .await
            .0,
        409
    );
    assert_eq!(
        api.get("/config/t").await.1,
        json!({"compatibilityLevel": "FORWARD"})
    );
    // NONE accepts anything; the global level is untouched.
    api.put("/config/t", json!({"compatibility": "NONE"})).await;
    assert_eq!(
        api.post("/subjects/t/versions", json!({"schema": no_a}))
            .await
            .0,
        200
    );
    assert_eq!(
        api.get("/config").await.1,
        json!({"compatibilityLevel": "BACKWARD"})
    );
    assert_eq!(
        api.get("/config/other?defaultToGlobal=true").await.1,
        json!({"compatibilityLevel": "BACKWARD"})
    );
}

#[tokio::test]
async fn ids_survive_a_restart() {
    let reg = common::TestRegistry::start().await;
    let api = Api::new(&reg.url);
    api.post("/subjects/a/versions", json!({"schema": V1}))
        .await;
    api.post("/subjects/a/versions", json!({"schema": V2}))
        .await;
    api.put("/config/a", json!({"compatibility": "FULL"})).await;
    let dir = reg.stop();

    let reg = common::TestRegistry::start_in(dir).await;
    let api = Api::new(&reg.url);
    assert_eq!(api.get("/schemas/ids/2").await.1, json!({"schema": V2}));
    assert_eq!(api.get("/subjects/a/versions").await.1, json!([1, 2]));
    assert_eq!(
        api.get("/config/a").await.1,
        json!({"compatibilityLevel": "FULL"})
    );
    // A new schema gets a new id, never a reused one.
    let v3 = V2.replace(
        r#""default":""}"#,
        r#""default":""},{"name":"d","type":"int","default":1}"#,
    );
    assert_eq!(
        api.post("/subjects/a/versions", json!({"schema": v3}))
            .await
            .1,
        json!({"id": 3})
    );
}

/// The Confluent client library (schema_registry_converter) works against it unchanged.
#[tokio::test]
async fn confluent_client_library_registers_and_fetches() {
    let reg = common::TestRegistry::start().await;
    let client = RegistryClient::new(&reg.url).unwrap();
    let tick = client
        .register_value("ticks.raw", RecordKind::Tick)
        .await
        .unwrap();
    let bar = client
        .register_value("bars.1m", RecordKind::Bar)
        .await
        .unwrap();
    assert_ne!(tick, bar);
    assert_eq!(
        client
            .register_value("ticks.raw", RecordKind::Tick)
            .await
            .unwrap(),
        tick
    );
    assert_eq!(
        client.schema_by_id(bar).await.unwrap(),
        RecordKind::Bar.schema_text()
    );
    assert!(client.schema_by_id(999).await.is_err());
}
