//! The embedded Kafka-protocol broker: Tansu's broker crate running inside the tickflow process,
//! for `tickflow demo` (memory storage) and `tickflow broker` (SQLite storage, for local work and
//! the test suite). Production points tickflow at real Kafka or MSK instead.

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use tansu_broker::broker::Broker;
use tansu_broker::coordinator::group::administrator::Controller;
use tansu_storage::StorageContainer;
use tokio::task::JoinHandle;
use url::Url;

type TansuBroker = Broker<Controller<StorageContainer>, StorageContainer>;

/// Errors starting the embedded broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// A listener or storage URL is malformed.
    #[error("bad broker URL {url}: {message}")]
    Url { url: String, message: String },
    /// The broker failed while starting.
    #[error("embedded broker failed to start: {0}")]
    Start(String),
    /// The broker did not accept connections in time.
    #[error("embedded broker did not listen on {addr} within {timeout:?}")]
    NotListening { addr: SocketAddr, timeout: Duration },
}

impl crate::error::Classified for BrokerError {
    fn class(&self) -> crate::error::ErrorClass {
        match self {
            BrokerError::Url { .. } => crate::error::ErrorClass::User,
            _ => crate::error::ErrorClass::External,
        }
    }
}

/// A running embedded broker; dropping it stops the broker.
pub struct EmbeddedBroker {
    addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl EmbeddedBroker {
    /// Starts a broker listening on 127.0.0.1:`port` (0 picks a free port) with `storage`:
    /// `memory://tansu/` or `sqlite://RELATIVE/PATH.db` (relative to the working directory).
    pub async fn start(storage: &str, port: u16) -> Result<Self, BrokerError> {
        Self::start_advertising(storage, port, None).await
    }

    /// Like [`EmbeddedBroker::start`], telling clients to connect to `advertised`
    /// (`host:port`) instead of the listening address: for a proxy in front of the broker,
    /// such as a TLS terminator.
    pub async fn start_advertising(
        storage: &str,
        port: u16,
        advertised: Option<&str>,
    ) -> Result<Self, BrokerError> {
        let port = if port == 0 { free_port()? } else { port };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let url = parse_url(&format!("tcp://{addr}"))?;
        let advertised = match advertised {
            Some(a) => parse_url(&format!("tcp://{a}"))?,
            None => url.clone(),
        };
        let storage = parse_url(storage)?;
        let mut broker = TansuBroker::builder()
            .node_id(111)
            .cluster_id("tickflow")
            .incarnation_id(uuid::Uuid::new_v4())
            .advertised_listener(advertised)
            .storage(storage)
            .listener(url)
            .silent(true)
            .build()
            .await
            .map_err(|e| BrokerError::Start(e.to_string()))?;
        let task = tokio::spawn(async move {
            if let Err(e) = broker.serve(tokio::time::Instant::now()).await {
                tracing::error!(error = %e, "embedded broker stopped");
            }
        });
        let me = Self {
            addr,
            task: Some(task),
        };
        me.wait_listening(Duration::from_secs(10)).await?;
        Ok(me)
    }

    /// The broker named by environment variable `var` (`host:port`), or else a new embedded
    /// broker with memory storage (for benchmarks); keep the returned broker alive.
    pub async fn from_env_or_memory(var: &str) -> Result<(String, Option<Self>), BrokerError> {
        if let Ok(servers) = std::env::var(var) {
            return Ok((servers, None));
        }
        let broker = Self::start("memory://tansu/", 0).await?;
        Ok((broker.bootstrap(), Some(broker)))
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    async fn wait_listening(&self, timeout: Duration) -> Result<(), BrokerError> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.task.as_ref().is_none_or(|t| t.is_finished()) {
                return Err(BrokerError::Start("the broker task ended (see log)".into()));
            }
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(BrokerError::NotListening {
            addr: self.addr,
            timeout,
        })
    }

    /// Waits until the broker stops (it only stops on error).
    pub async fn wait(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

fn parse_url(s: &str) -> Result<Url, BrokerError> {
    Url::parse(s).map_err(|e| BrokerError::Url {
        url: s.into(),
        message: e.to_string(),
    })
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> Result<u16, BrokerError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| BrokerError::Start(format!("no free port: {e}")))
}
