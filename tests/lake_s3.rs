//! The lake sink against S3 and Glue (moto, started by `scripts/test.sh`): every record lands
//! once, in its partition, every partition holding files is registered in Glue at its S3
//! location, and a new optional field in the tick schema mid-run adds a column to the Glue
//! table while old and new files stay readable. Large files go up in parts and are still
//! created only once. A missing bucket fails fast, naming it. A `partition_by` value that
//! needs escaping (`BRK/B`) is escaped once, alike in S3, Glue and a local lake's catalog.
//! One test only: it sets the AWS environment of its process.

use crate::common;

use std::collections::BTreeSet;

use apache_avro::types::Value;
use common::golden::START;
use common::golden::{read_all, read_everything, simulate_into};
use common::lake::{self, LandedTopic};
use common::process::{engine_env, start_engine_with};
use tickflow::catalog::local::TableFile;
use tickflow::catalog::{GlueCatalog, TableDef};
use tickflow::codec::{Encoder, RecordKind, RegistryClient, Tick};
use tickflow::config::AwsConfig;
use tickflow::config::lake::{LakeFormat, LakeSpec, MIN_PART_BYTES, UploadSpec};
use tickflow::kafka::{KafkaSink, ensure_topic};
use tickflow::lake::store::{Created, LakeStore, STAGING_DIR};
use tickflow::lake::{LakeError, decode_datum};
use tickflow::sim::{SimConfig, TickStream, universe};

/// moto, started by `scripts/test.sh`.
fn aws() -> AwsConfig {
    let endpoint = std::env::var("TICKFLOW_TEST_AWS_ENDPOINT")
        .expect("TICKFLOW_TEST_AWS_ENDPOINT is not set: run the tests with scripts/test.sh");
    AwsConfig {
        region: "us-east-1".into(),
        endpoint: Some(endpoint),
    }
}

/// Credentials moto accepts, for this process and the engines it starts.
const AWS_ENV: [(&str, &str); 4] = [
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

fn database(id: &str) -> String {
    id.replace('-', "_")
}

/// The tick schema with one more, optional, field, inserted mid-record (after `price`).
const EVOLVED: &str = r#"{"type":"record","name":"Tick","namespace":"io.tickflow","fields":[
 {"name":"symbol","type":"string"},{"name":"venue","type":"string"},{"name":"price","type":"double"},
 {"name":"exchange_seq","type":["null","long"],"default":null},
 {"name":"size","type":"long"},{"name":"event_time","type":{"type":"long","logicalType":"timestamp-micros"}},
 {"name":"trade_id","type":"long"},{"name":"side","type":"string"},
 {"name":"conditions","type":{"type":"array","items":"string"},"default":[]},
 {"name":"currency","type":"string","default":"USD"}]}"#;

/// Produces `ticks` (decoded tick records) in the evolved schema, one hour later in event
/// time, with the new field set; the schema is registered under the topic's subject.
async fn produce_evolved(
    kafka: &tickflow::config::KafkaConfig,
    registry: &str,
    topic: &str,
    ticks: Vec<(Vec<u8>, Value)>,
) {
    let id = common::register_schema(registry, &format!("{topic}-value"), EVOLVED).await;
    let schema = apache_avro::Schema::parse_str(EVOLVED).unwrap();
    let (k, t) = (kafka.clone(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let sink = KafkaSink::new(&k, &t).unwrap();
        for (i, (key, tick)) in ticks.into_iter().enumerate() {
            let Value::Record(mut fields) = tick else {
                panic!("{tick:?}")
            };
            for (name, v) in fields.iter_mut() {
                if let (true, Value::TimestampMicros(t)) = (name == "event_time", &v) {
                    *v = Value::TimestampMicros(t + 3_600_000_000);
                }
            }
            let at = fields.iter().position(|(n, _)| n == "price").unwrap() + 1;
            fields.insert(
                at,
                (
                    "exchange_seq".into(),
                    Value::Union(1, Box::new(Value::Long(i as i64))),
                ),
            );
            let datum = apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
                .build()
                .unwrap()
                .write_value_to_vec(Value::Record(fields))
                .unwrap();
            let mut framed = vec![0];
            framed.extend_from_slice(&id.to_be_bytes());
            framed.extend_from_slice(&datum);
            sink.send_to(&t, &key, &framed).unwrap();
        }
        sink.flush(std::time::Duration::from_secs(30)).unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_and_bars_land_in_s3_and_glue_with_schema_evolution() {
    // SAFETY: set before this test (the only one in this binary) starts any thread that
    // reads the environment; object_store and the AWS SDK read the credentials from it.
    for (k, v) in AWS_ENV {
        unsafe { std::env::set_var(k, v) };
    }
    let aws = aws();
    let endpoint = aws.endpoint.clone().unwrap();
    // A missing bucket fails fast, and says which.
    let missing = LakeStore::open("s3://no-such-bucket-tickflow/lake", &aws)
        .await
        .unwrap();
    let err = missing.check().await.unwrap_err().to_string();
    assert!(err.contains("no-such-bucket-tickflow"), "{err}");
    assert!(err.to_lowercase().contains("bucket"), "{err}");
    let kafka = common::kafka();
    let registry = common::TestRegistry::start().await;
    let client = RegistryClient::new(&registry.url).unwrap();
    let id = common::unique("s3lake");
    let bucket = id.clone();
    let created = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{created:?}");
    let input = format!("{id}.ticks");
    const COUNT: u64 = 40_000;
    let cfg = SimConfig {
        trades_per_second: 10.0,
        late_fraction: 0.01,
        ..SimConfig::default()
    };
    simulate_into(&kafka, &client, &input, cfg, 30, COUNT).await;
    let (k, i) = (kafka.clone(), input.clone());
    let first = tokio::task::spawn_blocking(move || read_all(&k, &[&i], COUNT as usize + 8))
        .await
        .unwrap();
    // The evolved ticks: copies of the last 500 ticks, one hour later.
    let later: Vec<(Vec<u8>, Value)> = first
        .iter()
        .filter(|r| r.key.as_deref() != Some(tickflow::codec::WATERMARK_KEY))
        .rev()
        .take(500)
        .map(|r| {
            let value = r.value.as_deref().unwrap();
            let tick = decode_datum(RecordKind::Tick.schema(), &value[5..]).unwrap();
            (r.key.clone().unwrap_or_default(), tick)
        })
        .collect();
    produce_evolved(&kafka, &registry.url, &input, later).await;

    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("t.yaml");
    let url = format!("s3://{bucket}/lake");
    let roll = "{ max_records: 4000, flush_interval: 2s }";
    // Files of 32 KiB or more take the multipart route: staged, then copied only if new.
    // The late ticks (dead-letter records) land too, as Parquet: a table of each format for
    // Athena's type check.
    let late = format!("{id}.late");
    let text = lake::topology(&id, &input, &url, &database(&id), roll).replace(
        "  roll:",
        &format!("    - {{ topic: {late}, table: late_ticks, format: parquet }}\n  roll:"),
    ) + format!("  upload: {{ multipart_threshold: {MULTIPART_FROM} }}\n").as_str();
    std::fs::write(&t, text).unwrap();
    let mut env = engine_env(
        &kafka.bootstrap_servers,
        &registry.url,
        &dir.path().join("s"),
    );
    env.push(("TICKFLOW_AWS__ENDPOINT".into(), endpoint.clone()));
    env.extend(AWS_ENV.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let topology = t.clone();
    let status =
        tokio::task::spawn_blocking(move || start_engine_with(&t, &env, &[]).child.wait().unwrap())
            .await
            .unwrap();
    assert!(status.success());

    let (k, i, b) = (kafka.clone(), input.clone(), format!("{id}.bars.1m"));
    let l = late.clone();
    let records = tokio::task::spawn_blocking(move || {
        let mut r = read_all(&k, &[&i], COUNT as usize + 8 + 500);
        r.extend(read_everything(&k, &[&b, &l]));
        r
    })
    .await
    .unwrap();
    let store = LakeStore::open(&url, &aws).await.unwrap();
    let files = lake::store_files(&store).await;
    let in_parts = files
        .iter()
        .filter(|(_, b)| b.len() >= MULTIPART_FROM)
        .count();
    assert!(in_parts > 0, "no file was uploaded in parts");
    assert!(store.list_all(STAGING_DIR).await.unwrap().is_empty());
    let landed = lake::landed(&files);
    let bars = format!("{id}.bars.1m");
    let topics: [LandedTopic; 3] = [
        (input.as_str(), "ticks", "event_time"),
        (bars.as_str(), "bars_1m", "window_start"),
        (late.as_str(), "late_ticks", "error_time"),
    ];
    let dirs = lake::check_records(&landed, &records, &topics, &client).await;

    let glue = GlueCatalog::connect(&aws).await.unwrap();
    let db = database(&id);
    for (_, table, _) in topics {
        let registered: BTreeSet<String> = glue
            .partitions(&db, table)
            .await
            .unwrap()
            .into_iter()
            .map(|(values, location)| {
                let dir = format!("{table}/dt={}/hour={}", values[0], values[1]);
                assert_eq!(location, store.location(&dir));
                dir
            })
            .collect();
        assert_eq!(
            Some(&registered),
            dirs.get(table),
            "{table}: partitions in Glue"
        );
    }
    let table = glue
        .table_def(&db, "ticks")
        .await
        .unwrap()
        .expect("ticks table");
    let names: Vec<(&str, &str)> = table
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.r#type.as_str()))
        .collect();
    assert!(names.contains(&("event_time", "timestamp")), "{names:?}");
    // Athena converts `timestamp-millis` only: the table and its Avro files say so.
    assert!(
        table.avro_schema.contains("timestamp-millis")
            && !table.avro_schema.contains("timestamp-micros"),
        "{}",
        table.avro_schema
    );
    assert!(
        names.contains(&("exchange_seq", "bigint")),
        "the new column: {names:?}"
    );
    let evolved = landed
        .values()
        .filter(
            |(_, v, _)| matches!(v, Value::Record(f) if f.iter().any(|(n, _)| n == "exchange_seq")),
        )
        .count();
    assert_eq!(evolved, 500, "records in files of the new schema");

    // The embedded engine reads the S3 lake through Glue's table definitions: old files
    // without the new column and new files with it.
    let sql = "SELECT count(*) AS n, count(exchange_seq) AS evolved FROM ticks";
    let csv = local_query(&topology, &endpoint, sql);
    assert_eq!(csv, format!("n,evolved\n{},500\n", COUNT + 500));

    check_athena_types(&glue, &db, &files).await;
    check_projection(&topology, &endpoint, &aws, &store, &db).await;
    check_multipart(&url, &aws).await;
    check_parquet_table(&glue, &db).await;
    check_column_order(&glue, &db).await;
    let services = Services {
        kafka: &kafka,
        client: &client,
        registry: &registry.url,
        endpoint: &endpoint,
        aws: &aws,
    };
    check_partition_by(&services, &bucket, &id).await;
}

/// Every Glue column of every table has the type Athena reads from each of the table's files
/// (`common::trino`: Trino's Avro and Parquet readers, written down apart from tickflow's own
/// mapping), and so has each column of an Avro table's `avro.schema.literal` (the schema
/// Athena reads Avro files with). A file may lack a column added after it was written.
async fn check_athena_types(glue: &GlueCatalog, db: &str, files: &[(String, Vec<u8>)]) {
    use common::trino;
    let mut defs = std::collections::BTreeMap::new();
    for (path, _) in files {
        let table = path.split('/').next().unwrap();
        if !defs.contains_key(table) {
            let def = glue.table_def(db, table).await.unwrap().expect("a table");
            defs.insert(table.to_string(), def);
        }
    }
    let mut checked = BTreeSet::new();
    for (path, bytes) in files {
        let table = path.split('/').next().unwrap();
        let def = &defs[table];
        let read = match LakeFormat::of_path(path).unwrap() {
            LakeFormat::Avro => trino::avro_file_columns(bytes),
            LakeFormat::Parquet => trino::parquet_columns(bytes),
        };
        let declared: Vec<(String, String)> = def
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.r#type.clone()))
            .collect();
        for (name, athena) in &read {
            let glue_type = declared.iter().find(|(n, _)| n == name).map(|(_, t)| t);
            assert_eq!(glue_type, Some(athena), "{table}.{name} in {path}");
        }
        if def.format == LakeFormat::Avro {
            let literal = apache_avro::Schema::parse_str(&def.avro_schema).unwrap();
            assert_eq!(
                trino::avro_columns(&literal),
                declared,
                "{table}: schema literal"
            );
        }
        checked.insert((table.to_string(), format!("{:?}", def.format)));
    }
    let formats: BTreeSet<&String> = checked.iter().map(|(_, f)| f).collect();
    assert_eq!(formats.len(), 2, "Avro and Parquet tables: {checked:?}");
}

/// What the partition_by check needs of the test's services.
struct Services<'a> {
    kafka: &'a tickflow::config::KafkaConfig,
    client: &'a RegistryClient,
    registry: &'a str,
    endpoint: &'a str,
    aws: &'a AwsConfig,
}

/// A `partition_by: [symbol]` table escapes `BRK/B` once, as Hive does: landed in S3 with
/// Glue and in a local lake with its local catalog, the S3 keys and the partitions'
/// locations name `symbol_part=BRK%2FB`, Glue and the local catalog hold the value `BRK/B`,
/// and `tickflow query` finds the rows by that key value and by the symbol.
async fn check_partition_by(s: &Services<'_>, bucket: &str, id: &str) {
    let topic = format!("{id}.pb");
    ensure_topic(s.kafka, &topic, 1, &[]).await.unwrap();
    let schema_id = s
        .client
        .register_value(&topic, RecordKind::Tick)
        .await
        .unwrap();
    let encoder = Encoder::<Tick>::new(RecordKind::Tick, schema_id);
    let ticks = TickStream::from_config(
        &SimConfig::default(),
        universe(None, 2).unwrap(),
        START,
        Some(400),
    )
    .unwrap();
    let (k, t) = (s.kafka.clone(), topic.clone());
    let values: Vec<(String, Vec<u8>)> = ticks
        .enumerate()
        .map(|(i, mut tick)| {
            tick.symbol = if i % 2 == 0 { "BRK/B" } else { "AAPL" }.into();
            let bytes = encoder.encode(&tick).unwrap();
            (tick.symbol, bytes)
        })
        .collect();
    tokio::task::spawn_blocking(move || {
        let sink = KafkaSink::new(&k, &t).unwrap();
        for (key, value) in values {
            sink.send_to(&t, key.as_bytes(), &value).unwrap();
        }
        sink.flush(std::time::Duration::from_secs(30)).unwrap();
    })
    .await
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("lake");
    let s3_url = format!("s3://{bucket}/pb");
    let local_url = format!("file://{}", local.display());
    let mut partitions = Vec::new();
    for (name, url) in [("s3", &s3_url), ("local", &local_url)] {
        let topology = dir.path().join(format!("{name}.yaml"));
        let app = format!("{id}-pb-{name}");
        let yaml = format!(
            "application: {app}\nsources:\n  ticks: {{ topic: {topic} }}\noperators:\n  - window: {{ id: bars, input: ticks, tumbling: [1m], aggregates: [volume] }}\nsinks:\n  - {{ input: bars, topic: \"{app}.bars.{{resolution}}\" }}\nlake:\n  url: {url}\n  database: {}\n  topics:\n    - {{ topic: {topic}, table: by_symbol, partition_by: [symbol] }}\n  roll: {{ max_records: 1000, flush_interval: 1s }}\n",
            database(id)
        );
        std::fs::write(&topology, yaml).unwrap();
        let mut env = engine_env(
            &s.kafka.bootstrap_servers,
            s.registry,
            &dir.path().join("s"),
        );
        env.push(("TICKFLOW_AWS__ENDPOINT".into(), s.endpoint.to_string()));
        env.extend(AWS_ENV.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let t = topology.clone();
        let args = ["--stage", "lake", "--stop-when-idle", "10s"];
        let status = tokio::task::spawn_blocking(move || {
            start_engine_with(&t, &env, &args).child.wait().unwrap()
        })
        .await
        .unwrap();
        assert!(status.success(), "{name}: {status}");
        let n = query_count(
            &topology,
            s.endpoint,
            "symbol_part = 'BRK/B' AND symbol = 'BRK/B'",
        );
        let groups = "SELECT symbol_part, symbol, count(*) AS n FROM by_symbol GROUP BY 1, 2";
        assert_eq!(
            n,
            200,
            "{name}: BRK/B rows by the key and the symbol; {}",
            local_query(&topology, s.endpoint, groups)
        );
        let store = LakeStore::open(url, s.aws).await.unwrap();
        let dirs: BTreeSet<String> = lake::store_files(&store)
            .await
            .into_iter()
            .map(|(path, _)| path.rsplit_once('/').unwrap().0.to_string())
            .collect();
        let escaped: Vec<&String> = dirs
            .iter()
            .filter(|d| d.contains("symbol_part=BRK%2FB"))
            .collect();
        assert!(!escaped.is_empty(), "{name}: {dirs:?}");
        assert!(
            dirs.iter().all(|d| !d.contains("%25")),
            "{name}: escaped twice: {dirs:?}"
        );
        partitions.push((store, dirs));
    }
    let glue = GlueCatalog::connect(s.aws).await.unwrap();
    let (s3, s3_dirs) = &partitions[0];
    let registered: BTreeSet<String> = glue
        .partitions(&database(id), "by_symbol")
        .await
        .unwrap()
        .into_iter()
        .map(|(values, location)| {
            assert!(
                ["AAPL", "BRK/B"].contains(&values[2].as_str()),
                "{values:?}"
            );
            let dir = symbol_dir(&values);
            assert_eq!(
                location,
                s3.location(&dir),
                "the Glue location is the S3 key's"
            );
            dir
        })
        .collect();
    assert_eq!(
        &registered, s3_dirs,
        "Glue's partitions are the S3 directories"
    );
    let (_, local_dirs) = &partitions[1];
    let file: TableFile = serde_json::from_slice(
        &std::fs::read(local.join(format!("_catalog/{}/by_symbol.json", database(id)))).unwrap(),
    )
    .unwrap();
    let registered: BTreeSet<String> = file
        .partitions
        .iter()
        .map(|p| symbol_dir(&p.values))
        .collect();
    assert_eq!(
        &registered, local_dirs,
        "the local catalog's partitions are its directories"
    );
    assert_eq!(s3_dirs, local_dirs, "S3 and the local lake name them alike");
}

/// The directory of a `by_symbol` partition from its catalog values (the symbol as it is).
fn symbol_dir(values: &[String]) -> String {
    let symbol = values[2].replace('/', "%2F");
    format!(
        "by_symbol/dt={}/hour={}/symbol_part={symbol}",
        values[0], values[1]
    )
}

/// `SELECT count(*) FROM by_symbol WHERE <filter>` by `tickflow query --engine local`.
fn query_count(topology: &std::path::Path, endpoint: &str, filter: &str) -> u64 {
    let sql = format!("SELECT count(*) AS n FROM by_symbol WHERE {filter}");
    let csv = local_query(topology, endpoint, &sql);
    csv.lines().nth(1).unwrap().parse().unwrap()
}

/// The CSV that `tickflow query --engine local` prints for `sql` on the topology's lake.
fn local_query(topology: &std::path::Path, endpoint: &str, sql: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tickflow"))
        .args(["query", "--engine", "local", "--format", "csv", "-t"])
        .arg(topology)
        .arg(sql)
        .env("TICKFLOW_AWS__ENDPOINT", endpoint)
        .env("TICKFLOW_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{sql}: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A Parquet lake's table is registered with Hive's Parquet SerDe and formats, and a table
/// switched to the other format is updated.
async fn check_parquet_table(glue: &GlueCatalog, db: &str) {
    let mut def = glue.table_def(db, "ticks").await.unwrap().unwrap();
    assert_eq!(def.format, LakeFormat::Avro);
    def.name = "ticks_parquet".into();
    def.format = LakeFormat::Parquet;
    glue.ensure_table(&def).await.unwrap();
    let back = glue.table_def(db, "ticks_parquet").await.unwrap().unwrap();
    assert_eq!(back.format, LakeFormat::Parquet);
    assert_eq!(back.columns, def.columns);
    def.format = LakeFormat::Avro;
    glue.ensure_table(&def).await.unwrap();
    let back = glue.table_def(db, "ticks_parquet").await.unwrap().unwrap();
    assert_eq!(back.format, LakeFormat::Avro, "updated to the new format");
}

/// A field inserted mid-record goes to the end of the Glue table's columns (Athena matches
/// an Avro partition's columns to the table's by position), a field dropped stays, and a
/// sink that computes the definition afresh (field order) gets the table's order back.
async fn check_column_order(glue: &GlueCatalog, db: &str) {
    const V1: &str = r#"{"type":"record","name":"Bar","fields":[{"name":"symbol","type":"string"},
      {"name":"open","type":"double"},{"name":"close","type":"double"}]}"#;
    const V2: &str = r#"{"type":"record","name":"Bar","fields":[{"name":"symbol","type":"string"},
      {"name":"venue","type":["null","string"],"default":null},{"name":"close","type":"double"}]}"#;
    let spec: LakeSpec = serde_saphyr::from_str(&format!(
        "url: s3://lake/x\ndatabase: {db}\ntopics: [{{topic: ordered}}]"
    ))
    .unwrap();
    let def = |id: u32, json: &str| {
        let schema = apache_avro::Schema::parse_str(json).unwrap();
        TableDef::of(
            &spec,
            &spec.topics[0],
            "s3://lake/x/ordered".into(),
            (id, &schema),
        )
        .unwrap()
    };
    let names =
        |d: &TableDef| -> Vec<String> { d.columns.iter().map(|c| c.name.clone()).collect() };
    glue.ensure_table(&def(1, V1)).await.unwrap();
    let registered = glue.ensure_table(&def(2, V2)).await.unwrap();
    let back = glue.table_def(db, "ordered").await.unwrap().unwrap();
    assert_eq!(names(&back), ["symbol", "open", "close", "venue"]);
    assert_eq!(back.schema_id, 2);
    assert_eq!(registered.columns, back.columns);
    assert_eq!(registered.avro_schema, back.avro_schema);
    let again = glue.ensure_table(&def(2, V2)).await.unwrap();
    assert_eq!(
        names(&again),
        names(&back),
        "a restarted sink keeps the table's order"
    );
}

/// Files at least this large are uploaded in parts in this test.
const MULTIPART_FROM: usize = 32 << 10;

/// A file of three parts on S3: created once, an identical replay is success, different
/// content under its name is refused and never replaces it (the conditional
/// CompleteMultipartUpload of the copy), and no staging object stays.
async fn check_multipart(url: &str, aws: &AwsConfig) {
    let upload = UploadSpec {
        multipart_threshold: 1,
        part_bytes: MIN_PART_BYTES,
    };
    let store = LakeStore::open(url, aws).await.unwrap().with_upload(upload);
    let big: Vec<u8> = (0..12_000_000u32).map(|i| (i % 253) as u8).collect();
    let path = "parts/dt=2026-03-02/hour=09/big+0+0000000000.avro";
    assert_eq!(
        store.put_new(path, big.clone()).await.unwrap(),
        Created::New
    );
    assert_eq!(
        store.put_new(path, big.clone()).await.unwrap(),
        Created::Identical
    );
    let mut other = big.clone();
    other[11_000_000] ^= 1;
    let err = store.put_new(path, other).await.unwrap_err();
    assert!(matches!(err, LakeError::Conflict(_)), "{err}");
    assert!(store.get(path).await.unwrap() == big, "replaced");
    assert!(store.list_all(STAGING_DIR).await.unwrap().is_empty());
}

/// The same lake under partition projection, in a second database: `catalog sync` creates
/// the tables with Athena's projection properties and registers no partition, and a saved
/// query's `{{day}}` comes from the lake's directories.
async fn check_projection(
    topology: &std::path::Path,
    endpoint: &str,
    aws: &AwsConfig,
    store: &LakeStore,
    db: &str,
) {
    let projected_db = format!("{db}_projected");
    let text = std::fs::read_to_string(topology).unwrap().replace(
        &format!("database: {db}"),
        &format!("database: {projected_db}"),
    ) + "  partition_projection: { since: 2026-01-01 }\n";
    let projected = topology.with_file_name("projected.yaml");
    std::fs::write(&projected, text).unwrap();
    let tickflow = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tickflow"))
            .args(args)
            .arg("-t")
            .arg(&projected)
            .env("TICKFLOW_AWS__ENDPOINT", endpoint)
            .env("TICKFLOW_LOG", "warn")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{args:?}: {stderr}");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    tickflow(&["catalog", "sync"]);
    let glue = GlueCatalog::connect(aws).await.unwrap();
    for table in ["ticks", "bars_1m"] {
        let def = glue.table_def(&projected_db, table).await.unwrap().unwrap();
        let p = |k: &str| def.projection.get(k).map(String::as_str);
        assert_eq!(p("projection.enabled"), Some("true"), "{table}");
        assert_eq!(p("projection.dt.range"), Some("2026-01-01,NOW"));
        assert_eq!(p("projection.hour.digits"), Some("2"));
        let template = format!("{}/dt=${{dt}}/hour=${{hour}}", store.location(table));
        assert_eq!(p("storage.location.template"), Some(template.as_str()));
        assert!(
            glue.partitions(&projected_db, table)
                .await
                .unwrap()
                .is_empty()
        );
    }
    let latest = tickflow(&[
        "query",
        "--engine",
        "local",
        "--format",
        "csv",
        "--file",
        "queries/latest_bars.sql",
    ]);
    assert_eq!(
        latest.lines().count(),
        31,
        "a header and 30 symbols: {latest}"
    );
}
