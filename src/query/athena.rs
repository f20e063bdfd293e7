//! Amazon Athena through `aws-sdk-athena`: start the query in the lake's database (workgroup,
//! catalog and output location from the config), poll with backoff until it is done, show
//! Athena's reason when it failed or was cancelled, read every page of results, and report
//! the data scanned with a cost estimate.

use std::future::Future;
use std::time::Duration;

use aws_sdk_athena::Client;
use aws_sdk_athena::config::retry::RetryConfig;
use aws_sdk_athena::types::{
    QueryExecutionContext, QueryExecutionState, ResultConfiguration, StatementType,
};

use super::{QueryError, ResultSet};
use crate::config::{AthenaConfig, AwsConfig};
use crate::metrics::Metrics;

/// Rows per result page (Athena's largest).
const PAGE_SIZE: i32 = 1000;
/// Athena bills at least this many bytes per query.
const MIN_BILLED_BYTES: i64 = 10_000_000;

/// What a finished query cost.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AthenaStats {
    /// The query execution id.
    pub query_id: String,
    /// Bytes Athena scanned.
    pub data_scanned: i64,
    /// Engine time, milliseconds.
    pub engine_millis: i64,
    /// Estimated price, US dollars.
    pub cost_usd: f64,
}

/// Where a query is.
#[derive(Debug, Clone, PartialEq)]
enum Progress {
    /// Queued or running.
    Pending,
    /// Done; with whether the first result row is the header, and the statistics.
    Succeeded {
        header_row: bool,
        stats: AthenaStats,
    },
}

/// One page of results.
#[derive(Debug, Clone, Default, PartialEq)]
struct Page {
    /// (name, type) of each column.
    columns: Vec<(String, String)>,
    /// Rows of values.
    rows: Vec<Vec<Option<String>>>,
    /// Token of the next page.
    next: Option<String>,
}

/// An Athena client.
pub struct AthenaEngine {
    client: Client,
    config: AthenaConfig,
    metrics: Metrics,
}

impl AthenaEngine {
    /// A client for `aws`'s region and endpoint, with up to 10 attempts per call (throttling
    /// and 5xx answers are retried with backoff); each query is counted in `metrics`.
    pub async fn connect(aws: &AwsConfig, config: &AthenaConfig, metrics: Metrics) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(aws.region.clone()))
            .retry_config(RetryConfig::standard().with_max_attempts(10));
        if let Some(endpoint) = &aws.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        Self {
            client: Client::new(&loader.load().await),
            config: config.clone(),
            metrics,
        }
    }

    /// Runs `sql` in `database` and returns every row, with what it cost; counts the query,
    /// its outcome, duration and bytes scanned in the metrics.
    pub async fn query(
        &self,
        database: &str,
        sql: &str,
    ) -> Result<(ResultSet, AthenaStats), QueryError> {
        let started = std::time::Instant::now();
        let result = self.run(database, sql).await;
        let m = &self.metrics;
        let outcome = match &result {
            Ok((_, stats)) => {
                m.athena_bytes_scanned
                    .inc_by(stats.data_scanned.max(0) as u64);
                "succeeded"
            }
            Err(QueryError::Timeout(_)) => "timed_out",
            Err(_) => "failed",
        };
        m.athena_queries.with_label_values(&[outcome]).inc();
        m.athena_query_seconds
            .observe(started.elapsed().as_secs_f64());
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        m.athena_last_query
            .set(now.map(|d| d.as_secs_f64()).unwrap_or(0.0));
        result
    }

    async fn run(&self, database: &str, sql: &str) -> Result<(ResultSet, AthenaStats), QueryError> {
        let id = self.start(database, sql).await?;
        let polled = poll(
            || self.progress(&id),
            self.config.max_poll_interval,
            self.config.timeout,
        )
        .await;
        let (header_row, stats) = match polled {
            Ok(Progress::Succeeded { header_row, stats }) => (header_row, stats),
            Ok(Progress::Pending) => unreachable!("poll returns finished queries"),
            Err(QueryError::Timeout(t)) => {
                let _ = self
                    .client
                    .stop_query_execution()
                    .query_execution_id(&id)
                    .send()
                    .await;
                return Err(QueryError::Timeout(t));
            }
            Err(e) => return Err(e),
        };
        let result = collect_pages(|token| self.page(&id, token), header_row).await?;
        Ok((result, stats))
    }

    async fn start(&self, database: &str, sql: &str) -> Result<String, QueryError> {
        let context = QueryExecutionContext::builder()
            .database(database)
            .catalog(&self.config.catalog)
            .build();
        let output = self
            .config
            .output_location
            .as_ref()
            .map(|o| ResultConfiguration::builder().output_location(o).build());
        let started = self
            .client
            .start_query_execution()
            .query_string(sql)
            .query_execution_context(context)
            .work_group(&self.config.workgroup)
            .set_result_configuration(output)
            .send()
            .await
            .map_err(|e| athena("start query", e))?;
        started
            .query_execution_id()
            .map(str::to_string)
            .ok_or_else(|| QueryError::Athena("start query: no query execution id".into()))
    }

    async fn progress(&self, id: &str) -> Result<Progress, QueryError> {
        let got = self
            .client
            .get_query_execution()
            .query_execution_id(id)
            .send()
            .await
            .map_err(|e| athena("get query execution", e))?;
        let q = got
            .query_execution()
            .ok_or_else(|| QueryError::Athena(format!("query {id}: no execution")))?;
        let status = q.status();
        let state = status.and_then(|s| s.state()).cloned();
        let reason = || {
            let mut text = status
                .and_then(|s| s.state_change_reason())
                .unwrap_or("no reason given")
                .to_string();
            if let Some(msg) = status
                .and_then(|s| s.athena_error())
                .and_then(|e| e.error_message())
                && !text.contains(msg)
            {
                text = format!("{text} ({msg})");
            }
            text
        };
        match state {
            Some(QueryExecutionState::Succeeded) => {
                let scanned = q
                    .statistics()
                    .and_then(|s| s.data_scanned_in_bytes())
                    .unwrap_or(0);
                Ok(Progress::Succeeded {
                    header_row: q.statement_type() == Some(&StatementType::Dml),
                    stats: AthenaStats {
                        query_id: id.to_string(),
                        data_scanned: scanned,
                        engine_millis: q
                            .statistics()
                            .and_then(|s| s.engine_execution_time_in_millis())
                            .unwrap_or(0),
                        cost_usd: cost(scanned, self.config.price_per_tb),
                    },
                })
            }
            Some(QueryExecutionState::Failed) => Err(QueryError::Athena(format!(
                "query {id} FAILED: {}",
                reason()
            ))),
            Some(QueryExecutionState::Cancelled) => Err(QueryError::Athena(format!(
                "query {id} CANCELLED: {}",
                reason()
            ))),
            _ => Ok(Progress::Pending),
        }
    }

    async fn page(&self, id: &str, token: Option<String>) -> Result<Page, QueryError> {
        let got = self
            .client
            .get_query_results()
            .query_execution_id(id)
            .max_results(PAGE_SIZE)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| athena("get query results", e))?;
        let Some(set) = got.result_set() else {
            return Ok(Page::default());
        };
        let columns = set
            .result_set_metadata()
            .map(|m| m.column_info())
            .unwrap_or_default()
            .iter()
            .map(|c| (c.name().to_string(), c.r#type().to_string()))
            .collect();
        let rows = set
            .rows()
            .iter()
            .map(|r| {
                r.data()
                    .iter()
                    .map(|d| d.var_char_value().map(str::to_string))
                    .collect()
            })
            .collect();
        Ok(Page {
            columns,
            rows,
            next: got.next_token().map(str::to_string),
        })
    }
}

fn athena(what: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> QueryError {
    QueryError::AthenaCall {
        what,
        source: Box::new(e),
    }
}

/// Estimated price of scanning `bytes`: Athena bills whole megabytes, at least 10 MB.
pub fn cost(bytes: i64, price_per_tb: f64) -> f64 {
    let billed = (bytes.max(0) as f64 / 1e6).ceil() * 1e6;
    billed.max(MIN_BILLED_BYTES as f64) / 1e12 * price_per_tb
}

/// Polls `progress` until the query is done: first after 100 ms, then doubling up to
/// `max_interval`; fails with [`QueryError::Timeout`] after `timeout`.
async fn poll<F, Fut>(
    mut progress: F,
    max_interval: Duration,
    timeout: Duration,
) -> Result<Progress, QueryError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Progress, QueryError>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut wait = Duration::from_millis(100).min(max_interval);
    loop {
        match progress().await? {
            Progress::Pending => {}
            done => return Ok(done),
        }
        if tokio::time::Instant::now() + wait > deadline {
            return Err(QueryError::Timeout(timeout));
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(max_interval);
    }
}

/// Reads every page (`page(token)`) into one result. The first row of a SELECT's first page
/// is the header, which is dropped.
async fn collect_pages<F, Fut>(mut page: F, header_row: bool) -> Result<ResultSet, QueryError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<Page, QueryError>>,
{
    let mut out = ResultSet::default();
    let mut token = None;
    let mut first = true;
    loop {
        let p = page(token).await?;
        if first {
            (out.columns, out.types) = p.columns.into_iter().unzip();
        }
        let skip = usize::from(first && header_row);
        out.rows.extend(p.rows.into_iter().skip(skip));
        first = false;
        match p.next {
            Some(next) => token = Some(next),
            None => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn polls_with_doubling_pauses_until_done() {
        let states = Mutex::new(VecDeque::from([
            Progress::Pending,
            Progress::Pending,
            Progress::Pending,
            Progress::Pending,
            Progress::Succeeded {
                header_row: true,
                stats: AthenaStats::default(),
            },
        ]));
        let polls = Mutex::new(Vec::new());
        let start = tokio::time::Instant::now();
        let done = poll(
            || async {
                polls.lock().unwrap().push(start.elapsed());
                Ok(states.lock().unwrap().pop_front().unwrap())
            },
            Duration::from_millis(500),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        assert!(matches!(done, Progress::Succeeded { .. }));
        let at: Vec<u128> = polls
            .lock()
            .unwrap()
            .iter()
            .map(|d| d.as_millis())
            .collect();
        assert_eq!(
            at,
            vec![0, 100, 300, 700, 1200],
            "100, 200, 400, then capped at 500"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_query_that_never_finishes_times_out() {
        let got = poll(
            || async { Ok(Progress::Pending) },
            Duration::from_secs(2),
            Duration::from_secs(10),
        )
        .await;
        assert!(matches!(got, Err(QueryError::Timeout(_))), "{got:?}");
    }

    #[tokio::test]
    async fn pages_are_joined_and_only_the_first_header_dropped() {
        let row = |v: &str| vec![Some(v.to_string())];
        let pages = Mutex::new(VecDeque::from([
            Page {
                columns: vec![("symbol".into(), "varchar".into())],
                rows: vec![row("symbol"), row("AAPL"), row("MSFT")],
                next: Some("t1".into()),
            },
            Page {
                columns: vec![("symbol".into(), "varchar".into())],
                rows: vec![row("NVDA")],
                next: Some("t2".into()),
            },
            Page {
                columns: vec![],
                rows: vec![row("TSLA")],
                next: None,
            },
        ]));
        let tokens = Mutex::new(Vec::new());
        let result = collect_pages(
            |token| {
                tokens.lock().unwrap().push(token);
                let p = pages.lock().unwrap().pop_front().unwrap();
                async move { Ok(p) }
            },
            true,
        )
        .await
        .unwrap();
        assert_eq!(result.columns, vec!["symbol"]);
        assert_eq!(result.types, vec!["varchar"]);
        let symbols: Vec<&str> = result
            .rows
            .iter()
            .map(|r| r[0].as_deref().unwrap())
            .collect();
        assert_eq!(symbols, vec!["AAPL", "MSFT", "NVDA", "TSLA"]);
        assert_eq!(
            *tokens.lock().unwrap(),
            vec![None, Some("t1".to_string()), Some("t2".to_string())]
        );
    }

    #[test]
    fn cost_bills_whole_megabytes_and_at_least_ten() {
        assert_eq!(cost(0, 5.0), 10e6 / 1e12 * 5.0);
        assert_eq!(cost(123_456_789, 5.0), 124e6 / 1e12 * 5.0);
    }
}
