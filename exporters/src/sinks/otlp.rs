//! OpenTelemetry: each event as an OTLP log record, exported over gRPC (`LogsService/Export`)
//! with the opentelemetry-proto client. The record's time is the event's, its `event_name` the
//! event kind, its body the event's JSON (a string, or with `body: map` the same object as an
//! OTLP map), its severity INFO, or the Sigma level for `process_alert`. One resource per sink
//! carries `service.name`, `host.name`, `k8s.node.name`, `k8s.cluster.name` and any attributes
//! configured. gRPC status codes decide what happens next, as the OTLP specification lists
//! them: UNAVAILABLE, RESOURCE_EXHAUSTED, ABORTED, DEADLINE_EXCEEDED, CANCELLED, OUT_OF_RANGE,
//! DATA_LOSS are retried; a request cut off without an answer (a reset stream, which tonic names
//! INTERNAL) is retried a few times, then split, so that a record that makes the collector or a
//! proxy reset the stream is refused alone; a message over the collector's size limit is
//! split; UNAUTHENTICATED and PERMISSION_DENIED are retried too (a rotated credential
//! recovers; dropping security events for it would not); anything else refuses the batch for
//! good (dead letter). A collector that reports a partial success without saying which records
//! it refused gets the whole batch dead-lettered with its message, so no refusal goes unseen.

use std::{collections::BTreeMap, path::PathBuf, str::FromStr, time::Duration};

use opentelemetry_proto::tonic::{
    collector::logs::v1::{logs_service_client::LogsServiceClient, ExportLogsServiceRequest},
    common::v1::{any_value::Value, AnyValue, ArrayValue, InstrumentationScope, KeyValue},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber},
    resource::v1::Resource,
};
use serde::Deserialize;
use tonic::{
    codec::CompressionEncoding,
    metadata::{AsciiMetadataKey, AsciiMetadataValue},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
    Code,
};

use super::{http::peer_text, Delivery};
use crate::{config::Secret, record::Record};

/// How an event is carried in a log record's body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyFormat {
    /// The event's JSON as a string: cheap, and what most log backends index as JSON.
    #[default]
    Json,
    /// The event as an OTLP map of its fields, for backends that query attributes of the body.
    Map,
}

/// `type: otlp`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// The collector's gRPC endpoint: `http://collector:4317`, or `https://` for TLS.
    pub endpoint: String,
    /// Request metadata (such as `authorization`), each value a secret.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// A PEM file of CA certificates to verify the collector with, beside the public roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Compress requests with gzip.
    #[serde(default = "default_true")]
    pub gzip: bool,
    /// Send secrets (or, for Kafka, events) over an unencrypted connection anyway; the agent
    /// warns once at start. Only for a network you trust.
    #[serde(default)]
    pub allow_plaintext: bool,
    /// Request timeout in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// The `k8s.cluster.name` resource attribute.
    #[serde(default)]
    pub cluster: Option<String>,
    /// More resource attributes (`deployment.environment: prod`).
    #[serde(default)]
    pub resource: BTreeMap<String, String>,
    /// The body's form.
    #[serde(default)]
    pub body: BodyFormat,
}

fn default_true() -> bool {
    true
}
fn default_timeout() -> u64 {
    10
}

/// The OTLP logs sink.
pub struct OtlpLogsSink {
    client: LogsServiceClient<Channel>,
    metadata: Vec<(AsciiMetadataKey, AsciiMetadataValue)>,
    resource: Resource,
    scope: InstrumentationScope,
    body: BodyFormat,
    endpoint: String,
    host: super::ecs::HostInfo,
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn string(s: &str) -> Value {
    Value::StringValue(s.to_string())
}

/// A JSON value as an OTLP value: objects become maps, arrays arrays.
pub fn any_value(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::StringValue(String::new()),
        J::Bool(b) => Value::BoolValue(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::IntValue(i),
            None => Value::DoubleValue(n.as_f64().unwrap_or(0.0)),
        },
        J::String(s) => Value::StringValue(s.clone()),
        J::Array(a) => Value::ArrayValue(ArrayValue {
            values: a
                .iter()
                .map(|v| AnyValue {
                    value: Some(any_value(v)),
                })
                .collect(),
        }),
        J::Object(o) => Value::KvlistValue(opentelemetry_proto::tonic::common::v1::KeyValueList {
            values: o.iter().map(|(k, v)| kv(k, any_value(v))).collect(),
        }),
    }
}

/// OTLP severity of a Sigma level.
fn alert_severity(level: &str) -> (SeverityNumber, &'static str) {
    match level {
        "critical" => (SeverityNumber::Fatal, "FATAL"),
        "high" => (SeverityNumber::Error, "ERROR"),
        "medium" => (SeverityNumber::Warn, "WARN"),
        "low" => (SeverityNumber::Info2, "INFO"),
        _ => (SeverityNumber::Info, "INFO"),
    }
}

impl OtlpLogsSink {
    /// A sink for `cfg`; `node` names the node in the resource. Connects at the first export
    /// and reconnects by itself after an outage.
    pub fn new(cfg: &OtlpConfig, node: &str) -> Result<OtlpLogsSink, String> {
        let mut endpoint = Endpoint::from_str(&cfg.endpoint)
            .map_err(|e| format!("endpoint {}: {e}", cfg.endpoint))?
            .timeout(Duration::from_secs(cfg.timeout_secs))
            .connect_timeout(Duration::from_secs(cfg.timeout_secs));
        if cfg.endpoint.starts_with("https://") {
            let mut tls = ClientTlsConfig::new().with_webpki_roots();
            if let Some(ca) = &cfg.ca_file {
                let pem =
                    std::fs::read(ca).map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| format!("endpoint {}: TLS: {e}", cfg.endpoint))?;
        } else if cfg.ca_file.is_some() {
            return Err(format!(
                "ca_file is set but endpoint {} is not https://",
                cfg.endpoint
            ));
        }
        let mut client = LogsServiceClient::new(endpoint.connect_lazy());
        if cfg.gzip {
            client = client.send_compressed(CompressionEncoding::Gzip);
        }
        let mut metadata = Vec::new();
        for (name, secret) in &cfg.headers {
            let key = AsciiMetadataKey::from_str(&name.to_ascii_lowercase())
                .map_err(|_| format!("headers: {name} is not a valid gRPC metadata name"))?;
            let value = secret.read().map_err(|e| format!("headers.{name}: {e}"))?;
            let value = AsciiMetadataValue::from_str(&value)
                // The value is a secret: say what is wrong with it, never what it is.
                .map_err(|_| format!("headers.{name}: the value is not printable ASCII"))?;
            metadata.push((key, value));
        }
        let mut attributes = vec![
            kv("service.name", string("vigil")),
            kv("service.version", string(env!("CARGO_PKG_VERSION"))),
            kv("host.name", string(node)),
            kv("k8s.node.name", string(node)),
        ];
        if let Some(c) = &cfg.cluster {
            attributes.push(kv("k8s.cluster.name", string(c)));
        }
        let host = super::ecs::HostInfo::read();
        for (k, v) in super::semconv::host_attributes(&host) {
            attributes.push(kv(k, any_value(&v)));
        }
        for (k, v) in &cfg.resource {
            attributes.retain(|a| &a.key != k);
            attributes.push(kv(k, string(v)));
        }
        Ok(OtlpLogsSink {
            client,
            metadata,
            resource: Resource {
                attributes,
                ..Default::default()
            },
            scope: InstrumentationScope {
                name: "vigil".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                ..Default::default()
            },
            body: cfg.body,
            endpoint: cfg.endpoint.clone(),
            host,
        })
    }

    /// One record as a log record; `observed` is when the batch left.
    pub fn log_record(&self, r: &Record, observed: u64) -> LogRecord {
        let parsed = serde_json::from_slice::<serde_json::Value>(&r.json).ok();
        let (severity, text) = match parsed
            .as_ref()
            .and_then(|v| v.get("process_alert")?.get("level")?.as_str())
        {
            Some(level) => alert_severity(level),
            None => (SeverityNumber::Info, "INFO"),
        };
        let body = match (self.body, &parsed) {
            (BodyFormat::Map, Some(v)) => any_value(v),
            _ => Value::StringValue(String::from_utf8_lossy(&r.json).into_owned()),
        };
        LogRecord {
            time_unix_nano: r.time_ns,
            observed_time_unix_nano: observed,
            severity_number: severity as i32,
            severity_text: text.into(),
            body: Some(AnyValue { value: Some(body) }),
            attributes: [
                // event_name is recent in OTLP; the attribute serves collectors that predate it.
                kv("event.name", string(r.kind)),
                kv("vigil.exec_id", string(&r.exec_id)),
            ]
            .into_iter()
            .chain(
                parsed
                    .iter()
                    .flat_map(|v| super::semconv::event_attributes(v, &self.host))
                    .map(|(k, v)| kv(k, any_value(&v))),
            )
            .collect(),
            event_name: r.kind.to_string(),
            ..Default::default()
        }
    }

    /// The export request for a batch.
    pub fn request(&self, batch: &[Record]) -> ExportLogsServiceRequest {
        let observed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(self.resource.clone()),
                scope_logs: vec![ScopeLogs {
                    scope: Some(self.scope.clone()),
                    log_records: batch.iter().map(|r| self.log_record(r, observed)).collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    /// Sends one batch.
    pub async fn deliver(&mut self, batch: &[Record]) -> Delivery {
        let mut req = tonic::Request::new(self.request(batch));
        for (k, v) in &self.metadata {
            req.metadata_mut().insert(k.clone(), v.clone());
        }
        let refuse = |why: String| Delivery::refuse_all(batch.len(), why);
        match self.client.export(req).await {
            Ok(resp) => match resp.into_inner().partial_success {
                Some(p) if p.rejected_log_records > 0 => refuse(format!(
                    "OTLP collector refused {} of the {} records of this batch without saying which: {}",
                    p.rejected_log_records,
                    batch.len(),
                    peer_text(p.error_message.as_bytes())
                )),
                _ => Delivery::Delivered,
            },
            Err(status) => failed(&status, &self.endpoint, batch.len()),
        }
    }
}

/// What a failed export means for its batch of `len` records. A status the client made up
/// from a transport error (it carries it as its source: the request was cut off, no answer
/// came) is not the collector refusing the records: a collector that stops mid-request
/// resets the stream, which tonic names INTERNAL. It is retried, a few times: a collector or
/// proxy that resets the stream on some record every time gets that record refused alone.
fn failed(status: &tonic::Status, endpoint: &str, len: usize) -> Delivery {
    let why = format!(
        "OTLP {endpoint}: {:?}: {}",
        status.code(),
        peer_text(status.message().as_bytes())
    );
    let too_large =
        status.message().contains("too large") || status.message().contains("larger than max");
    let from_transport = std::error::Error::source(status).is_some();
    match status.code() {
        Code::ResourceExhausted | Code::OutOfRange if too_large => {
            if len > 1 {
                Delivery::TooLarge
            } else {
                Delivery::refuse_all(len, why)
            }
        }
        Code::Unavailable
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::OutOfRange
        | Code::DataLoss
        | Code::Unauthenticated
        | Code::PermissionDenied
        | Code::Unknown => Delivery::Retry(why),
        _ if from_transport => Delivery::CutOff(why),
        _ => Delivery::refuse_all(len, why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(body: BodyFormat) -> OtlpLogsSink {
        let cfg = OtlpConfig {
            endpoint: "http://127.0.0.1:4317".into(),
            headers: BTreeMap::new(),
            ca_file: None,
            gzip: true,
            timeout_secs: 1,
            allow_plaintext: false,
            cluster: Some("prod".into()),
            resource: BTreeMap::from([("deployment.environment".into(), "test".into())]),
            body,
        };
        OtlpLogsSink::new(&cfg, "node-1").unwrap()
    }

    fn record(kind: &'static str, json: &str) -> Record {
        Record {
            time_ns: 1_795_600_800_123_456_789,
            kind,
            exec_id: "ZXhlYw==".into(),
            json: bytes::Bytes::copy_from_slice(json.as_bytes()),
        }
    }

    #[tokio::test]
    async fn an_alert_is_a_log_record_with_its_sigma_level_as_severity() {
        let s = sink(BodyFormat::Json);
        let json = r#"{"process_alert":{"level":"high","title":"t"},"time":"x"}"#;
        let lr = s.log_record(&record("process_alert", json), 7);
        assert_eq!(lr.time_unix_nano, 1_795_600_800_123_456_789);
        assert_eq!(lr.observed_time_unix_nano, 7);
        assert_eq!(lr.severity_number, SeverityNumber::Error as i32);
        assert_eq!(lr.event_name, "process_alert");
        assert_eq!(
            lr.body.unwrap().value,
            Some(Value::StringValue(json.into()))
        );
        let keys: Vec<_> = s
            .resource
            .attributes
            .iter()
            .map(|a| a.key.as_str())
            // What this machine's os-release says varies; the keys that are always there stay.
            .filter(|k| {
                !matches!(
                    *k,
                    "host.id" | "os.name" | "os.version" | "os.description" | "os.build_id"
                )
            })
            .collect();
        assert_eq!(
            keys,
            [
                "service.name",
                "service.version",
                "host.name",
                "k8s.node.name",
                "k8s.cluster.name",
                "host.arch",
                "os.type",
                "deployment.environment"
            ]
        );
    }

    #[tokio::test]
    async fn a_map_body_keeps_the_event_structure() {
        let s = sink(BodyFormat::Map);
        let lr = s.log_record(
            &record("process_exec", r#"{"process_exec":{"process":{"pid":42}}}"#),
            0,
        );
        assert_eq!(lr.severity_number, SeverityNumber::Info as i32);
        let Some(Value::KvlistValue(top)) = lr.body.unwrap().value else {
            panic!("not a map")
        };
        assert_eq!(top.values[0].key, "process_exec");
        let Some(Value::KvlistValue(exec)) = top.values[0].value.clone().unwrap().value else {
            panic!("not a map")
        };
        let Some(Value::KvlistValue(process)) = exec.values[0].value.clone().unwrap().value else {
            panic!("not a map")
        };
        assert_eq!(
            process.values[0].value.clone().unwrap().value,
            Some(Value::IntValue(42))
        );
    }

    #[tokio::test]
    async fn a_ca_file_without_tls_is_refused() {
        let cfg = OtlpConfig {
            endpoint: "http://127.0.0.1:4317".into(),
            headers: BTreeMap::new(),
            ca_file: Some("/etc/ssl/ca.pem".into()),
            gzip: false,
            timeout_secs: 1,
            allow_plaintext: false,
            cluster: None,
            resource: BTreeMap::new(),
            body: BodyFormat::Json,
        };
        let err = OtlpLogsSink::new(&cfg, "n").err().unwrap();
        assert!(err.contains("not https://"), "{err}");
    }

    /// A broken connection, as tonic reports one: its status wraps the transport's error.
    #[derive(Debug)]
    struct StreamReset(tonic::Status);

    impl std::fmt::Display for StreamReset {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("connection reset mid-request")
        }
    }

    impl std::error::Error for StreamReset {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_collector_that_stops_mid_request_is_retried_and_its_own_internal_error_refuses() {
        let reset = tonic::Status::from_error(Box::new(StreamReset(tonic::Status::internal(
            "h2 protocol error: stream no longer needed",
        ))));
        assert_eq!(reset.code(), Code::Internal);
        assert!(
            matches!(failed(&reset, "http://c:4317", 3), Delivery::CutOff(_)),
            "a transport failure refused nothing"
        );
        let said = tonic::Status::internal("the pipeline broke");
        match failed(&said, "http://c:4317", 3) {
            Delivery::Partial { retry, rejected } => {
                assert!(retry.is_empty());
                assert_eq!(rejected.len(), 3);
                assert!(
                    rejected[0].1.contains("the pipeline broke"),
                    "{:?}",
                    rejected[0]
                );
            }
            _ => panic!("the collector's own INTERNAL refuses the batch"),
        }
        assert!(matches!(
            failed(&tonic::Status::unavailable("down"), "http://c:4317", 3),
            Delivery::Retry(_)
        ));
    }
}
