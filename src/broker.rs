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
    #[error("bad broker URL {url}: {source}")]
    Url {
        url: String,
        source: url::ParseError,
    },
    /// The broker cannot start as asked.
    #[error("embedded broker failed to start: {0}")]
    Start(String),
    /// A step of starting the broker failed.
    #[error("embedded broker failed to start: {what}: {source}")]
    Failed {
        /// The step.
        what: &'static str,
        /// Tansu's, the runtime's or the socket's error.
        source: crate::error::BoxError,
    },
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
        Self::start_with(storage, port, advertised, None).await
    }

    /// Like [`EmbeddedBroker::start_advertising`]; with `scram`, every client must
    /// authenticate with SASL/SCRAM-SHA-256 or -512 as that user, as on MSK's SCRAM listener.
    /// Needs SQLite storage: the credentials are stored once the broker listens (Tansu keeps
    /// them per cluster, which the broker registers as it starts).
    pub async fn start_with(
        storage: &str,
        port: u16,
        advertised: Option<&str>,
        scram: Option<&ScramUser>,
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
            .advertised_listener(advertised.clone())
            .storage(storage.clone())
            .listener(url)
            .silent(true)
            .authentication(scram.is_some())
            .build()
            .await
            .map_err(|e| failed("building the broker", e))?;
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
        if let Some(user) = scram {
            // After the broker registered its cluster: credentials belong to one.
            store_scram_user_apart(&storage, &advertised, user)?;
        }
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

/// A user that clients authenticate as with SASL/SCRAM.
#[derive(Clone)]
pub struct ScramUser {
    /// The user name (`sasl.username`).
    pub name: String,
    /// Its password (`sasl.password`).
    pub password: String,
}

impl std::fmt::Debug for ScramUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramUser")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Iterations of the SCRAM key derivation (Kafka's minimum, 4096).
const SCRAM_ITERATIONS: u32 = 4096;

/// Runs [`store_scram_user`] on a thread of its own with a runtime of its own, dropped
/// after: Tansu's storage keeps its SQLite connection in a task until its runtime ends, and
/// the broker cannot open the database while that connection holds it.
fn store_scram_user_apart(
    storage: &Url,
    advertised: &Url,
    user: &ScramUser,
) -> Result<(), BrokerError> {
    let (storage, advertised, user) = (storage.clone(), advertised.clone(), user.clone());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| failed("a runtime for the SCRAM user", e))?;
        let stored = runtime.block_on(store_scram_user(&storage, &advertised, &user));
        drop(runtime);
        stored
    })
    .join()
    .map_err(|_| BrokerError::Start("storing the SCRAM user panicked".into()))?
}

/// Stores `user`'s SCRAM-SHA-256 and -512 credentials in the broker's (SQLite) storage.
async fn store_scram_user(
    storage: &Url,
    advertised: &Url,
    user: &ScramUser,
) -> Result<(), BrokerError> {
    use tansu_sans_io::ScramMechanism;
    use tansu_storage::Storage;
    if storage.scheme() != "sqlite" {
        return Err(BrokerError::Start(
            "SCRAM users need SQLite storage (not --memory)".into(),
        ));
    }
    let store = StorageContainer::builder()
        .cluster_id("tickflow")
        .node_id(111)
        .advertised_listener(advertised.clone())
        .storage(storage.clone())
        .silent(true)
        .build()
        .await
        .map_err(|e| failed("opening the storage for the SCRAM user", e))?;
    let salt = uuid::Uuid::new_v4();
    let (password, salt) = (user.password.as_bytes(), salt.as_bytes());
    let credentials = [
        (
            ScramMechanism::Scram256,
            scram_credential::<sha2::Sha256>(password, salt),
        ),
        (
            ScramMechanism::Scram512,
            scram_credential::<sha2::Sha512>(password, salt),
        ),
    ];
    // The broker holds the same SQLite file: a write may find it busy, so try again.
    let mut last = None;
    for _ in 0..50 {
        for (mechanism, credential) in credentials.clone() {
            if let Err(e) = store
                .upsert_user_scram_credential(&user.name, mechanism, credential)
                .await
            {
                last = Some(e);
            }
        }
        let stored = store
            .user_scram_credential(&user.name, ScramMechanism::Scram512)
            .await;
        if matches!(stored, Ok(Some(_))) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(match last {
        Some(e) => failed("storing the SCRAM user", e),
        None => BrokerError::Start("storing the SCRAM user: not found after writing it".into()),
    })
}

/// The stored SCRAM credential of a password (RFC 5802): the salted password is
/// PBKDF2-HMAC over `salt`; the broker keeps H(HMAC(salted, "Client Key")) and
/// HMAC(salted, "Server Key"), never the password.
fn scram_credential<D>(password: &[u8], salt: &[u8]) -> tansu_storage::ScramCredential
where
    D: sha2::Digest + sha2::digest::core_api::BlockSizeUser + Clone + Sync,
{
    use hmac::Mac;
    let mut salted = vec![0; <D as sha2::Digest>::output_size()];
    pbkdf2::pbkdf2::<hmac::SimpleHmac<D>>(password, salt, SCRAM_ITERATIONS, &mut salted)
        .expect("HMAC takes keys of any length");
    let key = |label: &[u8]| {
        let mut mac = <hmac::SimpleHmac<D> as Mac>::new_from_slice(&salted)
            .expect("HMAC takes keys of any length");
        mac.update(label);
        mac.finalize().into_bytes().to_vec()
    };
    tansu_storage::ScramCredential {
        salt: bytes::Bytes::copy_from_slice(salt),
        iterations: SCRAM_ITERATIONS as i32,
        stored_key: D::digest(key(b"Client Key")).to_vec().into(),
        server_key: key(b"Server Key").into(),
    }
}

fn parse_url(s: &str) -> Result<Url, BrokerError> {
    Url::parse(s).map_err(|source| BrokerError::Url {
        url: s.into(),
        source,
    })
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> Result<u16, BrokerError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| failed("no free port", e))
}

fn failed(what: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> BrokerError {
    BrokerError::Failed {
        what,
        source: Box::new(e),
    }
}
