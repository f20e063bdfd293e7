//! Authentication of tickflow's Kafka clients beyond librdkafka's own properties: Amazon MSK's
//! IAM access control. With `kafka.aws_iam`, clients speak SASL/OAUTHBEARER over TLS with a
//! token that is an AWS SigV4-presigned `kafka-cluster:Connect` request, signed with
//! credentials from the standard AWS chain (the instance role on EC2), as the
//! `aws-msk-iam-sasl-signer` crate makes it. librdkafka asks for a new token before the
//! current one expires (tokens live 15 minutes); a new client gets its first token at once
//! (see [`Auth::prime`]), because librdkafka only asks from inside a poll and some requests
//! (metadata, topic creation) come before any poll.

use std::ffi::{CString, NulError};
use std::sync::Arc;
use std::time::Duration;

use aws_config::Region;
use aws_credential_types::provider::SharedCredentialsProvider;
use rdkafka::client::OAuthToken;

use super::KafkaError;
use crate::config::KafkaConfig;

/// The principal name given with the token; MSK takes the identity from the signature.
const PRINCIPAL: &str = "tickflow";

/// Why a client has no OAUTHBEARER token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// OAUTHBEARER without MSK IAM or librdkafka's OIDC.
    #[error(
        "no OAUTHBEARER token source: set kafka.aws_iam for MSK IAM, or sasl.oauthbearer.method=oidc"
    )]
    NoSource,
    /// The signer failed (no credentials in the AWS chain, most often).
    #[error("signing an MSK IAM token: {0}")]
    Sign(#[source] crate::error::BoxError),
    /// The signer did not answer.
    #[error("signing an MSK IAM token took over 30 s")]
    SignTimeout,
    /// The signing thread could not run.
    #[error("a runtime for signing an MSK IAM token: {0}")]
    Runtime(#[source] std::io::Error),
    /// The signing thread panicked.
    #[error("the MSK IAM signing thread panicked")]
    Panicked,
    /// A token or principal that librdkafka cannot take.
    #[error("the token holds a NUL byte: {0}")]
    Nul(#[from] NulError),
    /// librdkafka refused the first token.
    #[error("setting the first MSK IAM token failed ({code}): {message}")]
    Refused {
        /// librdkafka's error code.
        code: String,
        /// librdkafka's reason.
        message: String,
    },
}

impl crate::error::Classified for TokenError {
    fn class(&self) -> crate::error::ErrorClass {
        use crate::error::ErrorClass;
        match self {
            TokenError::NoSource | TokenError::Nul(_) => ErrorClass::User,
            TokenError::Sign(_) | TokenError::SignTimeout | TokenError::Refused { .. } => {
                ErrorClass::External
            }
            TokenError::Runtime(_) | TokenError::Panicked => ErrorClass::Internal,
        }
    }
}

/// How a client authenticates: nothing beyond its properties, or MSK IAM tokens.
#[derive(Clone, Default)]
pub struct Auth {
    iam: Option<Arc<MskIam>>,
}

/// Signs MSK IAM tokens for one region.
struct MskIam {
    region: String,
    /// Credentials to sign with instead of the default chain (tests).
    credentials: Option<SharedCredentialsProvider>,
}

impl Auth {
    /// The authentication `cfg` asks for; with `aws_iam`, the token region is
    /// `aws_iam_region`, else the region in the bootstrap host names
    /// (`*.kafka.<region>.amazonaws.com`), else `AWS_REGION` / `AWS_DEFAULT_REGION`.
    pub fn of(cfg: &KafkaConfig) -> Result<Self, KafkaError> {
        if !cfg.aws_iam {
            return Ok(Self::default());
        }
        let region = cfg
            .aws_iam_region
            .clone()
            .or_else(|| msk_region(&cfg.bootstrap_servers))
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .ok_or_else(|| KafkaError::Auth {
                message: "kafka.aws_iam is on but no region is known: set kafka.aws_iam_region"
                    .into(),
            })?;
        Ok(Self::iam(region, None))
    }

    /// MSK IAM tokens for `region`, signed with `credentials` (or else the default chain).
    pub fn iam(region: String, credentials: Option<SharedCredentialsProvider>) -> Self {
        Self {
            iam: Some(Arc::new(MskIam {
                region,
                credentials,
            })),
        }
    }

    /// Whether clients authenticate with MSK IAM.
    pub fn is_iam(&self) -> bool {
        self.iam.is_some()
    }

    /// A fresh token, for librdkafka's refresh event. Without IAM there is none to give.
    pub fn token(&self) -> Result<OAuthToken, TokenError> {
        let Some(iam) = &self.iam else {
            return Err(TokenError::NoSource);
        };
        let (token, lifetime_ms) = iam.sign()?;
        Ok(OAuthToken {
            token,
            principal_name: PRINCIPAL.into(),
            lifetime_ms,
        })
    }

    /// Gives a new client its first token, so that requests it makes before its first poll
    /// (metadata, topic creation, an admin client that is never polled) can authenticate.
    /// Does nothing without IAM.
    pub fn prime(&self, client: &rdkafka::client::NativeClient) -> Result<(), KafkaError> {
        if self.iam.is_none() {
            return Ok(());
        }
        let token = self.token()?;
        let value = CString::new(token.token).map_err(TokenError::from)?;
        let principal = CString::new(token.principal_name).map_err(TokenError::from)?;
        let mut errstr = [0 as std::ffi::c_char; 512];
        // SAFETY: `client` is a live librdkafka handle owned by the caller; the strings and
        // the error buffer outlive the call, which copies what it keeps.
        let code = unsafe {
            rdkafka::bindings::rd_kafka_oauthbearer_set_token(
                client.ptr(),
                value.as_ptr(),
                token.lifetime_ms,
                principal.as_ptr(),
                std::ptr::null_mut(),
                0,
                errstr.as_mut_ptr(),
                errstr.len(),
            )
        };
        if matches!(
            code,
            rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        ) {
            return Ok(());
        }
        // SAFETY: librdkafka writes a NUL-terminated message into the buffer on error.
        let message = unsafe { std::ffi::CStr::from_ptr(errstr.as_ptr()) };
        Err(TokenError::Refused {
            code: format!("{code:?}"),
            message: message.to_string_lossy().into_owned(),
        }
        .into())
    }
}

impl MskIam {
    /// Signs a token on a thread of its own: librdkafka asks from its poll, which may run on
    /// an async runtime's thread, where blocking on another runtime is not allowed.
    fn sign(&self) -> Result<(String, i64), TokenError> {
        let region = Region::new(self.region.clone());
        let credentials = self.credentials.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(TokenError::Runtime)?;
            runtime.block_on(async move {
                let signing = async {
                    match credentials {
                        Some(c) => {
                            aws_msk_iam_sasl_signer::generate_auth_token_from_credentials_provider(
                                region, c,
                            )
                            .await
                        }
                        None => aws_msk_iam_sasl_signer::generate_auth_token(region).await,
                    }
                };
                match tokio::time::timeout(Duration::from_secs(30), signing).await {
                    Ok(Ok(signed)) => Ok(signed),
                    Ok(Err(e)) => Err(TokenError::Sign(e.into())),
                    Err(_) => Err(TokenError::SignTimeout),
                }
            })
        })
        .join()
        .map_err(|_| TokenError::Panicked)?
    }
}

/// The AWS region in MSK bootstrap host names: `b-1.c.x.c2.kafka.us-east-1.amazonaws.com:9098`
/// (provisioned) or `boot-x.c2.kafka-serverless.eu-west-1.amazonaws.com:9098` (serverless).
pub fn msk_region(bootstrap_servers: &str) -> Option<String> {
    bootstrap_servers.split(',').find_map(|server| {
        let host = server.trim().split(':').next()?;
        let labels: Vec<&str> = host.split('.').collect();
        let at = labels
            .iter()
            .position(|l| *l == "kafka" || *l == "kafka-serverless")?;
        let region = labels.get(at + 1)?;
        (labels.get(at + 2) == Some(&"amazonaws")).then(|| region.to_string())
    })
}

/// Implements `rdkafka::ClientContext` for a context type with an `auth: Auth` field, so that
/// librdkafka's OAUTHBEARER refresh asks it for MSK IAM tokens. A generic context names its
/// parameter after `where`: `oauth_client_context!(Context<S> where S: Stage)`.
#[macro_export]
macro_rules! oauth_client_context {
    ($context:ty $(where $g:ident: $bound:path)?) => {
        impl$(<$g: $bound>)? rdkafka::ClientContext for $context {
            const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

            fn generate_oauth_token(
                &self,
                _config: Option<&str>,
            ) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
                Ok(self.auth.token()?)
            }
        }
    };
}

/// The context of tickflow's plain clients (admin, metadata, readers): librdkafka's default
/// behaviour plus MSK IAM tokens.
#[derive(Clone, Default)]
pub struct AuthContext {
    /// Where tokens come from.
    pub auth: Auth,
}

oauth_client_context!(AuthContext);

impl rdkafka::consumer::ConsumerContext for AuthContext {}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;
    use base64::Engine;

    #[test]
    fn msk_host_names_give_the_region() {
        let provisioned = "b-1.prod.abc123.c2.kafka.us-east-1.amazonaws.com:9098,b-2.prod.abc123.c2.kafka.us-east-1.amazonaws.com:9098";
        assert_eq!(msk_region(provisioned).as_deref(), Some("us-east-1"));
        let serverless = "boot-xyz.c2.kafka-serverless.eu-west-1.amazonaws.com:9098";
        assert_eq!(msk_region(serverless).as_deref(), Some("eu-west-1"));
        assert_eq!(msk_region("127.0.0.1:9092"), None);
        assert_eq!(msk_region("kafka.internal:9092"), None);
    }

    fn test_auth() -> Auth {
        let credentials = Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI", None, None, "test");
        Auth::iam(
            "eu-west-1".into(),
            Some(SharedCredentialsProvider::new(credentials)),
        )
    }

    /// The token is MSK's: a base64url presigned `kafka-cluster:Connect` request for the
    /// region's Kafka endpoint, signed (SigV4) and expiring in the future.
    #[test]
    fn iam_tokens_are_presigned_connect_requests() {
        let token = test_auth().token().unwrap();
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&token.token)
            .unwrap();
        let url = String::from_utf8(url).unwrap();
        assert!(
            url.starts_with(
                "https://kafka.eu-west-1.amazonaws.com/?Action=kafka-cluster%3AConnect"
            ),
            "{url}"
        );
        for part in [
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Credential=AKIDEXAMPLE%2F",
            "X-Amz-Signature=",
        ] {
            assert!(url.contains(part), "{part} missing from {url}");
        }
        assert!(
            !url.contains("wJalrXUtnFEMI"),
            "the secret key is in the token"
        );
        let now_ms = chrono::Utc::now().timestamp_millis();
        assert!(
            token.lifetime_ms > now_ms,
            "{} <= {now_ms}",
            token.lifetime_ms
        );
        assert_eq!(token.principal_name, PRINCIPAL);
    }

    /// librdkafka of this build speaks TLS and SASL (an MSK client can be created at all),
    /// and takes the first IAM token on a new client before any connection.
    #[test]
    fn an_iam_client_is_created_and_primed() {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let mut cfg = KafkaConfig {
            bootstrap_servers: "127.0.0.1:1".into(),
            aws_iam: true,
            ..KafkaConfig::default()
        };
        cfg.aws_iam_region = Some("eu-west-1".into());
        let auth = test_auth();
        let consumer: BaseConsumer<AuthContext> = super::super::client_config(&cfg)
            .create_with_context(AuthContext { auth: auth.clone() })
            .unwrap();
        auth.prime(consumer.client().native_client()).unwrap();
        let without = Auth::default();
        assert!(without.token().is_err());
        without.prime(consumer.client().native_client()).unwrap();
    }

    #[test]
    fn scram_over_tls_and_mutual_tls_clients_can_be_created() {
        use rdkafka::consumer::BaseConsumer;
        for properties in [
            vec![
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanism", "SCRAM-SHA-512"),
                ("sasl.username", "u"),
                ("sasl.password", "p"),
            ],
            vec![("security.protocol", "SSL")],
            vec![
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanism", "PLAIN"),
                ("sasl.username", "u"),
                ("sasl.password", "p"),
            ],
        ] {
            let mut cfg = KafkaConfig {
                bootstrap_servers: "127.0.0.1:1".into(),
                ..KafkaConfig::default()
            };
            for (k, v) in &properties {
                cfg.properties.insert(k.to_string(), v.to_string());
            }
            let created: Result<BaseConsumer<AuthContext>, _> =
                super::super::client_config(&cfg).create_with_context(AuthContext::default());
            assert!(created.is_ok(), "{properties:?}: {:?}", created.err());
        }
    }
}
